/* tests/unit/test_annotations.c — agent/annotations.c: PVC annotations into a
 * policy. Good sets parse into the expected values; each bad annotation is
 * named in its own error while the others still parse; combination rules;
 * unknown keys warn; caps on sizes and counts. */
#define _GNU_SOURCE
#include "../../agent/annotations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The problem about key with the given severity, or NULL. */
static const struct cairn_ann_problem *problem(const struct cairn_pvc_policy *p,
                                               const char *key, enum cairn_ann_severity sev)
{
    size_t i;
    for (i = 0; i < p->n_problems; i++)
        if (strcmp(p->problems[i].key, key) == 0 && p->problems[i].severity == sev)
            return &p->problems[i];
    return NULL;
}

static void dump(const struct cairn_pvc_policy *p)
{
    size_t i;
    for (i = 0; i < p->n_problems; i++)
        fprintf(stderr, "    [%d] %s\n", p->problems[i].severity, p->problems[i].msg);
}

static void test_full_good(void)
{
    static const struct cairn_annotation a[] = {
        {"kubectl.kubernetes.io/last-applied-configuration", "{}"},
        {"cairn.io/schedule", "CRON_TZ=Europe/Berlin 30 1 * * *"},
        {"cairn.io/retention", "last=3,hourly=24,daily=7,weekly=4,monthly=12"},
        {"cairn.io/quiesce", "postgres"},
        {"cairn.io/credentials-secret", "pg-backup-creds"},
        {"cairn.io/snapshot", "csi"},
        {"cairn.io/snapshot-class", "csi-hostpath-snapclass"},
        {"cairn.io/exclude", " pg_wal/*, *.tmp ,,lost+found "},
        {"cairn.io/backup-requested-at", "2026-11-21T21:01:41Z"},
        {"cairn.io/delete-volume-snapshots", " false\n"},
        {"cairn.io/csi-copy", "keep"},
        {"cairn.io/last-backup", "2026-11-21T01:30:12Z"},
        {"cairn.io/last-status", "ok"},
        {"pv.kubernetes.io/bind-completed", "yes"},
    };
    struct cairn_pvc_policy p;
    cairn_err err;
    int rc = cairn_pvc_policy_parse(a, N(a), &p, &err);
    CHECK(rc == CAIRN_OK, "full set: rc %d %s", rc, err.msg);
    if (rc)
        dump(&p);
    CHECK(p.present == CAIRN_ANN_ALL && p.valid == CAIRN_ANN_ALL, "present %x valid %x",
          p.present, p.valid);
    CHECK(p.n_problems == 0 && p.n_warnings == 0, "no problems: %zu", p.n_problems);
    CHECK(strcmp(p.schedule.tz, "Europe/Berlin") == 0 && p.schedule.minutes == 1ull << 30 &&
              p.schedule.hours == 2,
          "schedule");
    CHECK(p.retention.last == 3 && p.retention.hourly == 24 && p.retention.daily == 7 &&
              p.retention.weekly == 4 && p.retention.monthly == 12,
          "retention");
    CHECK(p.quiesce == CAIRN_QUIESCE_POSTGRES && p.snapshot == CAIRN_SNAPSHOT_CSI, "methods");
    CHECK(strcmp(p.credentials_secret, "pg-backup-creds") == 0, "secret");
    CHECK(p.csi_copy == CAIRN_CSI_COPY_KEEP, "csi-copy %d", (int)p.csi_copy);
    CHECK(strcmp(p.snapshot_class, "csi-hostpath-snapclass") == 0, "class");
    CHECK(p.n_exclude == 3 && strcmp(p.exclude[0], "pg_wal/*") == 0 &&
              strcmp(p.exclude[1], "*.tmp") == 0 && strcmp(p.exclude[2], "lost+found") == 0,
          "exclude: %zu", p.n_exclude);
    CHECK(p.requested_at_ns == 1795294901LL * 1000000000LL, "requested at %lld",
          (long long)p.requested_at_ns);
    CHECK(p.keep_volume_snapshots == 1, "delete-volume-snapshots false");
    CHECK(cairn_pvc_policy_can_backup(&p) && cairn_pvc_policy_can_prune(&p), "usable");
    cairn_pvc_policy_clear(&p);
    cairn_pvc_policy_clear(&p); /* twice is fine */
}

static void test_defaults(void)
{
    struct cairn_pvc_policy p;
    cairn_err err;
    /* no annotations at all: valid, nothing scheduled, nothing pruned */
    CHECK(cairn_pvc_policy_parse(NULL, 0, &p, &err) == CAIRN_OK, "empty");
    CHECK(p.present == 0 && p.valid == CAIRN_ANN_ALL && p.quiesce == CAIRN_QUIESCE_NONE &&
              p.snapshot == CAIRN_SNAPSHOT_FILE && p.n_exclude == 0 && p.requested_at_ns == 0 &&
              p.keep_volume_snapshots == 0,
          "defaults");
    CHECK(cairn_pvc_policy_can_backup(&p) && !cairn_pvc_policy_can_prune(&p),
          "no retention: never prune");
    cairn_pvc_policy_clear(&p);
    {
        static const struct cairn_annotation a[] = {{"cairn.io/schedule", "0 2 * * *\n"},
                                                    {"cairn.io/quiesce", " fsfreeze\n"},
                                                    {"cairn.io/snapshot", "exec"},
                                                    {"cairn.io/retention", "\n"}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_OK, "fsfreeze+exec: %s",
              err.msg);
        CHECK(p.quiesce == CAIRN_QUIESCE_FSFREEZE && p.snapshot == CAIRN_SNAPSHOT_EXEC,
              "fsfreeze+exec values");
        CHECK(!cairn_pvc_policy_can_prune(&p), "empty retention: never prune");
        cairn_pvc_policy_clear(&p);
    }
}

/* Every annotation bad at once: each one has its own error naming it and
 * its value; the good ones still parse. */
static void test_all_bad_each_named(void)
{
    static const struct cairn_annotation a[] = {
        {"cairn.io/schedule", "60 * * * *"},
        {"cairn.io/retention", "daily=x"},
        {"cairn.io/quiesce", "fsfrez"},
        {"cairn.io/snapshot", "lvm"},
        {"cairn.io/snapshot-class", "Fast_Class"},
        {"cairn.io/credentials-secret", "-bad-"},
        {"cairn.io/exclude", "ok/*,[abc"},
        {"cairn.io/backup-requested-at", "yesterday"},
        {"cairn.io/delete-volume-snapshots", "no"},
        {"cairn.io/csi-copy", "yes"},
    };
    static const char *const want[][3] = {
        {"cairn.io/schedule", "'60 * * * *'", "out of range 0-59"},
        {"cairn.io/retention", "'daily=x'", "daily"},
        {"cairn.io/quiesce", "'fsfrez'", "valid: none, fsfreeze, postgres, mysql"},
        {"cairn.io/snapshot", "'lvm'", "valid: file, btrfs, csi, exec"},
        {"cairn.io/snapshot-class", "'Fast_Class'", "lower-case letters"},
        {"cairn.io/credentials-secret", "'-bad-'", "Secret name"},
        {"cairn.io/exclude", "'[abc'", "without its ']'"},
        {"cairn.io/backup-requested-at", "'yesterday'", "RFC 3339"},
        {"cairn.io/delete-volume-snapshots", "'no'", "not a boolean (valid: true, false)"},
        {"cairn.io/csi-copy", "'yes'", "not a csi-copy mode (valid: false, true, keep)"},
    };
    struct cairn_pvc_policy p;
    cairn_err err;
    size_t i;
    int rc = cairn_pvc_policy_parse(a, N(a), &p, &err);
    CHECK(rc == CAIRN_FAILED, "rc %d", rc);
    CHECK(strstr(err.msg, "10 invalid annotations: cairn.io/schedule") == err.msg, "summary: %s",
          err.msg);
    CHECK(p.n_errors == 10 && p.valid == 0 && p.present == CAIRN_ANN_ALL, "errors %zu valid %x",
          p.n_errors, p.valid);
    for (i = 0; i < N(want); i++) {
        const struct cairn_ann_problem *pr = problem(&p, want[i][0], CAIRN_ANN_ERROR);
        CHECK(pr && strstr(pr->msg, want[i][0]) == pr->msg && strstr(pr->msg, want[i][1]) &&
                  strstr(pr->msg, want[i][2]),
              "%s: %s", want[i][0], pr ? pr->msg : "(no error)");
    }
    /* invalid parts are reset to defaults, nothing half-parsed is kept */
    CHECK(p.quiesce == CAIRN_QUIESCE_NONE && p.snapshot == CAIRN_SNAPSHOT_FILE &&
              p.schedule.minutes == 0 && p.n_exclude == 0 && p.snapshot_class[0] == 0 &&
              p.credentials_secret[0] == 0 && p.requested_at_ns == 0,
          "reset");
    CHECK(!cairn_pvc_policy_can_backup(&p) && !cairn_pvc_policy_can_prune(&p), "unusable");
    cairn_pvc_policy_clear(&p);
}

/* One bad annotation among good ones: only it is invalid. */
static void test_one_bad(void)
{
    static const struct {
        const char *key, *value;
        unsigned part;
        const char *msg;
    } rows[] = {
        {"cairn.io/schedule", "0 0 30 2 *", CAIRN_ANN_SCHEDULE, "never runs"},
        {"cairn.io/schedule", "5-1 * * * *", CAIRN_ANN_SCHEDULE, "reversed"},
        {"cairn.io/schedule", "", CAIRN_ANN_SCHEDULE, "empty schedule"},
        {"cairn.io/schedule", "CRON_TZ=Nowhere/Land 0 0 * * *", CAIRN_ANN_SCHEDULE,
         "not in the tz database"},
        {"cairn.io/retention", "daily=7,bogus=1", CAIRN_ANN_RETENTION, "bogus"},
        {"cairn.io/exclude", "/var/tmp/*", CAIRN_ANN_EXCLUDE, "relative to the volume root"},
        {"cairn.io/exclude", "a\x01" "b", CAIRN_ANN_EXCLUDE, "'a\\x01b' contains a control"},
        {"cairn.io/exclude", "ok,\xff\xfe", CAIRN_ANN_EXCLUDE, "not valid UTF-8"},
        {"cairn.io/backup-requested-at", "2026-13-01T00:00:00Z", CAIRN_ANN_REQUESTED_AT,
         "RFC 3339"},
        {"cairn.io/backup-requested-at", "1014-01-01T00:00:00Z", CAIRN_ANN_REQUESTED_AT,
         "1970-2261"},
        {"cairn.io/backup-requested-at", "9999-12-31T23:59:59Z", CAIRN_ANN_REQUESTED_AT,
         "RFC 3339"},
        {"cairn.io/snapshot-class", "a..b", CAIRN_ANN_SNAPSHOT_CLASS, "VolumeSnapshotClass"},
        {"cairn.io/credentials-secret", "UPPER", CAIRN_ANN_CREDENTIALS, "Secret"},
        {"cairn.io/quiesce", "Postgres", CAIRN_ANN_QUIESCE, "not a quiesce method"},
        {"cairn.io/delete-volume-snapshots", "False", CAIRN_ANN_DELETE_VS,
         "cairn.io/delete-volume-snapshots 'False': not a boolean (valid: true, false)"},
    };
    size_t i;
    for (i = 0; i < N(rows); i++) {
        struct cairn_annotation a[6] = {
            {"cairn.io/schedule", "@hourly"},
            {"cairn.io/retention", "last=5"},
            {"cairn.io/quiesce", "postgres"},
            {"cairn.io/credentials-secret", "db"},
            {"cairn.io/snapshot", "csi"},
            {"cairn.io/snapshot-class", "fast"},
        };
        struct cairn_annotation b[7];
        struct cairn_pvc_policy p;
        cairn_err err;
        size_t j, n = 0;
        const struct cairn_ann_problem *pr;
        int rc;
        for (j = 0; j < 6; j++)
            if (strcmp(a[j].key, rows[i].key) != 0)
                b[n++] = a[j];
        b[n].key = rows[i].key;
        b[n++].value = rows[i].value;
        rc = cairn_pvc_policy_parse(b, n, &p, &err);
        pr = problem(&p, rows[i].key, CAIRN_ANN_ERROR);
        CHECK(rc == CAIRN_FAILED && p.n_errors == 1 && pr && strstr(pr->msg, rows[i].msg),
              "%s '%s': rc %d errors %zu msg '%s'", rows[i].key, rows[i].value, rc, p.n_errors,
              pr ? pr->msg : "");
        CHECK(p.valid == (CAIRN_ANN_ALL & ~rows[i].part), "%s: valid %x", rows[i].key, p.valid);
        /* a bad cairn.io/delete-volume-snapshots stops retention (nothing is
         * forgotten, nothing deleted) but not backups */
        if (rows[i].part == CAIRN_ANN_DELETE_VS)
            CHECK(!cairn_pvc_policy_can_prune(&p) && p.keep_volume_snapshots == 0,
                  "bad delete-volume-snapshots: no retention");
        /* the others kept their values */
        if (rows[i].part != CAIRN_ANN_RETENTION)
            CHECK(p.retention.last == 5, "retention kept");
        if (rows[i].part != CAIRN_ANN_SNAPSHOT_CLASS)
            CHECK(strcmp(p.snapshot_class, "fast") == 0, "class kept");
        if (rows[i].part != CAIRN_ANN_SCHEDULE)
            CHECK(p.schedule.hours == 0xffffff, "schedule kept");
        cairn_pvc_policy_clear(&p);
    }
}

static void test_combinations(void)
{
    struct cairn_pvc_policy p;
    cairn_err err;
    const struct cairn_ann_problem *pr;
    {
        static const struct cairn_annotation a[] = {{"cairn.io/quiesce", "mysql"}};
        CHECK(cairn_pvc_policy_parse(a, 1, &p, &err) == CAIRN_FAILED, "mysql without secret");
        pr = problem(&p, "cairn.io/quiesce", CAIRN_ANN_ERROR);
        CHECK(pr && strstr(pr->msg, "'mysql' needs cairn.io/credentials-secret"), "%s",
              pr ? pr->msg : "");
        CHECK(!(p.valid & CAIRN_ANN_QUIESCE) && !cairn_pvc_policy_can_backup(&p), "invalid");
        cairn_pvc_policy_clear(&p);
    }
    {
        static const struct cairn_annotation a[] = {{"cairn.io/quiesce", "fsfreeze"},
                                                    {"cairn.io/snapshot", "file"}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_FAILED, "fsfreeze+file");
        pr = problem(&p, "cairn.io/quiesce", CAIRN_ANN_ERROR);
        CHECK(pr && strstr(pr->msg, "frozen for the whole file copy") &&
                  strstr(pr->msg, "'csi' or 'exec'"),
              "%s", pr ? pr->msg : "");
        CHECK(!(p.valid & CAIRN_ANN_QUIESCE) && (p.valid & CAIRN_ANN_SNAPSHOT) &&
                  p.quiesce == CAIRN_QUIESCE_NONE,
              "quiesce invalid, snapshot fine");
        cairn_pvc_policy_clear(&p);
    }
    {
        /* snapshot defaults to file: the message says so */
        static const struct cairn_annotation a[] = {{"cairn.io/quiesce", "fsfreeze"}};
        CHECK(cairn_pvc_policy_parse(a, 1, &p, &err) == CAIRN_FAILED &&
                  strstr(err.msg, "'file' (the default) is refused"),
              "fsfreeze+default: %s", err.msg);
        cairn_pvc_policy_clear(&p);
    }
    {
        static const struct cairn_annotation a[] = {{"cairn.io/quiesce", "fsfreeze"},
                                                    {"cairn.io/snapshot", "btrfs"}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_OK, "fsfreeze+btrfs");
        pr = problem(&p, "cairn.io/quiesce", CAIRN_ANN_WARNING);
        CHECK(pr && strstr(pr->msg, "atomic by itself") && p.quiesce == CAIRN_QUIESCE_NONE,
              "btrfs needs no freeze");
        cairn_pvc_policy_clear(&p);
    }
    {
        static const struct cairn_annotation a[] = {{"cairn.io/snapshot", "csi"}};
        CHECK(cairn_pvc_policy_parse(a, 1, &p, &err) == CAIRN_OK, "csi alone");
        pr = problem(&p, "cairn.io/snapshot-class", CAIRN_ANN_NOTE);
        CHECK(pr && strstr(pr->msg, "default VolumeSnapshotClass"), "default class note");
        CHECK(p.n_warnings == 0 && p.n_errors == 0, "a note only");
        cairn_pvc_policy_clear(&p);
    }
    {
        static const struct cairn_annotation a[] = {{"cairn.io/snapshot-class", "fast"},
                                                    {"cairn.io/credentials-secret", "db"}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_OK, "ignored parts");
        CHECK(problem(&p, "cairn.io/snapshot-class", CAIRN_ANN_WARNING) &&
                  problem(&p, "cairn.io/credentials-secret", CAIRN_ANN_WARNING) &&
                  p.n_warnings == 2,
              "ignored with a warning");
        cairn_pvc_policy_clear(&p);
    }
    {
        /* csi-copy without snapshot csi: a warning naming both, and it is off */
        static const struct cairn_annotation a[] = {{"cairn.io/csi-copy", "true"},
                                                    {"cairn.io/snapshot", "btrfs"}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_OK, "csi-copy with btrfs");
        pr = problem(&p, "cairn.io/csi-copy", CAIRN_ANN_WARNING);
        CHECK(pr && strstr(pr->msg, "cairn.io/csi-copy 'true' is ignored") &&
                  strstr(pr->msg, "'btrfs'") && p.csi_copy == CAIRN_CSI_COPY_OFF &&
                  cairn_pvc_policy_can_backup(&p),
              "csi-copy ignored: %s", pr ? pr->msg : "(none)");
        cairn_pvc_policy_clear(&p);
    }
    {
        /* a bad csi-copy stops the backups (it shapes them), nothing falls back */
        static const struct cairn_annotation a[] = {{"cairn.io/csi-copy", "TRUE"},
                                                    {"cairn.io/snapshot", "csi"}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_FAILED, "csi-copy TRUE");
        CHECK(!cairn_pvc_policy_can_backup(&p) && p.csi_copy == CAIRN_CSI_COPY_OFF &&
                  problem(&p, "cairn.io/csi-copy", CAIRN_ANN_ERROR),
              "bad csi-copy refuses the backup");
        cairn_pvc_policy_clear(&p);
    }
    {
        static const struct cairn_annotation a[] = {{"cairn.io/csi-copy", " true\n"},
                                                    {"cairn.io/snapshot", "csi"}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_OK &&
                  p.csi_copy == CAIRN_CSI_COPY_ON && p.n_warnings == 0,
              "csi-copy true");
        cairn_pvc_policy_clear(&p);
    }
    {
        /* a bad quiesce does not also complain about the secret */
        static const struct cairn_annotation a[] = {{"cairn.io/quiesce", "pg"},
                                                    {"cairn.io/credentials-secret", "db"}};
        cairn_pvc_policy_parse(a, N(a), &p, &err);
        CHECK(p.n_errors == 1 && p.n_warnings == 0 && (p.valid & CAIRN_ANN_CREDENTIALS),
              "one error only: %zu/%zu", p.n_errors, p.n_warnings);
        cairn_pvc_policy_clear(&p);
    }
}

static void test_unknown_and_caps(void)
{
    struct cairn_pvc_policy p;
    cairn_err err;
    char big[CAIRN_ANN_MAX_VALUE + 10], many[64 * 70], longglob[400];
    size_t i, o = 0;
    {
        static const struct cairn_annotation a[] = {
            {"cairn.io/schedul", "@daily"},      /* typo */
            {"cairn.io/schedule", "@daily"},
            {"example.com/cairn.io/x", "1"},      /* not ours */
            {"cairn.io/", "x"},
        };
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_OK, "unknown keys warn only");
        CHECK(p.n_warnings == 2 && problem(&p, "cairn.io/schedul", CAIRN_ANN_WARNING) &&
                  strstr(p.problems[0].msg, "unknown annotation 'cairn.io/schedul' is ignored"),
              "warnings: %zu", p.n_warnings);
        CHECK(p.valid & CAIRN_ANN_SCHEDULE && p.schedule.hours == 1, "schedule still parsed");
        cairn_pvc_policy_clear(&p);
    }
    {
        static const struct cairn_annotation a[] = {{"cairn.io/schedule", "@daily"},
                                                    {"cairn.io/schedule", "@hourly"},
                                                    {"cairn.io/retention", "last=1"}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_FAILED &&
                  strstr(err.msg, "given more than once") && !(p.valid & CAIRN_ANN_SCHEDULE) &&
                  (p.valid & CAIRN_ANN_RETENTION),
              "duplicate: %s", err.msg);
        cairn_pvc_policy_clear(&p);
    }
    /* an oversized value: refused, the message shows at most 64 bytes of it */
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    {
        struct cairn_annotation a[] = {{"cairn.io/retention", big}, {"cairn.io/quiesce", "none"}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_FAILED &&
                  strstr(err.msg, "longer than 8192 bytes") && strlen(err.msg) < 300 &&
                  strstr(err.msg, "aaa...'"),
              "big: %s", err.msg);
        CHECK(p.valid == (CAIRN_ANN_ALL & ~CAIRN_ANN_RETENTION), "only retention invalid");
        cairn_pvc_policy_clear(&p);
    }
    /* 65 globs: refused; 64: fine */
    for (i = 0; i < 65; i++)
        o += (size_t)snprintf(many + o, sizeof many - o, "%sdir%zu/*", i ? "," : "", i);
    {
        struct cairn_annotation a[] = {{"cairn.io/exclude", many}};
        CHECK(cairn_pvc_policy_parse(a, 1, &p, &err) == CAIRN_FAILED &&
                  strstr(err.msg, "more than 64 patterns") && p.n_exclude == 0,
              "65 globs: %s", err.msg);
        cairn_pvc_policy_clear(&p);
        *strrchr(many, ',') = 0;
        CHECK(cairn_pvc_policy_parse(a, 1, &p, &err) == CAIRN_OK && p.n_exclude == 64 &&
                  strcmp(p.exclude[63], "dir63/*") == 0,
              "64 globs");
        cairn_pvc_policy_clear(&p);
    }
    memset(longglob, 'g', sizeof longglob - 1);
    longglob[sizeof longglob - 1] = 0;
    {
        struct cairn_annotation a[] = {{"cairn.io/exclude", longglob}};
        CHECK(cairn_pvc_policy_parse(a, 1, &p, &err) == CAIRN_FAILED &&
                  strstr(err.msg, "longer than 256 bytes"),
              "long glob: %s", err.msg);
        cairn_pvc_policy_clear(&p);
    }
    /* many unknown keys: capped list, all counted */
    {
        struct cairn_annotation a[40];
        char keys[40][32];
        for (i = 0; i < 40; i++) {
            snprintf(keys[i], sizeof keys[i], "cairn.io/x%zu", i);
            a[i].key = keys[i];
            a[i].value = "1";
        }
        CHECK(cairn_pvc_policy_parse(a, 40, &p, &err) == CAIRN_OK &&
                  p.n_problems == CAIRN_ANN_MAX_PROBLEMS && p.n_warnings == 40 &&
                  p.n_dropped == 40 - CAIRN_ANN_MAX_PROBLEMS,
              "capped problems");
        cairn_pvc_policy_clear(&p);
    }
    /* NULL key / value */
    {
        struct cairn_annotation a[] = {{NULL, "x"}, {"cairn.io/quiesce", NULL}};
        CHECK(cairn_pvc_policy_parse(a, N(a), &p, &err) == CAIRN_FAILED &&
                  strstr(err.msg, "cairn.io/quiesce '': not a quiesce method"),
              "NULL value: %s", err.msg);
        cairn_pvc_policy_clear(&p);
    }
    /* unprintable bytes are escaped in messages */
    {
        struct cairn_annotation a[] = {{"cairn.io/snapshot", "x\033[31mred'"}};
        cairn_pvc_policy_parse(a, 1, &p, &err);
        CHECK(strstr(err.msg, "'x\\x1b[31mred\\x27'") && !strchr(err.msg, '\033'),
              "escaped: %s", err.msg);
        cairn_pvc_policy_clear(&p);
    }
}

static void test_dns1123(void)
{
    static const char *const good[] = {"a", "db-creds", "pg.backup-1", "0abc", "a.b.c"};
    static const char *const bad[] = {"", "-a", "a-", "A", "a_b", "a..b", ".a", "a.", "a.-b",
                                      "a b"};
    char longname[300];
    size_t i;
    for (i = 0; i < N(good); i++)
        CHECK(cairn_dns1123_subdomain(good[i]), "good '%s'", good[i]);
    for (i = 0; i < N(bad); i++)
        CHECK(!cairn_dns1123_subdomain(bad[i]), "bad '%s'", bad[i]);
    memset(longname, 'a', sizeof longname);
    longname[253] = 0;
    CHECK(cairn_dns1123_subdomain(longname), "253 bytes");
    longname[253] = 'a';
    longname[254] = 0;
    CHECK(!cairn_dns1123_subdomain(longname), "254 bytes");
}

/* cairn.io/snapshot: exec:NAME names a command of the agent's configuration;
 * only a DNS-label-like name is accepted (never a path or a command). */
static void test_exec_names(void)
{
    static const char *const good[][2] = {
        {"exec", ""}, {"exec:san", "san"}, {"exec:vm-snap-2", "vm-snap-2"},
        {" exec:a ", "a"}, {"exec:abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz012345"},
    };
    static const char *const bad[] = {
        "exec:", "exec:/bin/sh", "exec:San", "exec:-x", "exec:x-", "exec:a b", "exec:a;rm",
        "exec:abcdefghijklmnopqrstuvwxyz0123456", "exec:..", "exec:a/b", "exec :a",
    };
    size_t i;
    for (i = 0; i < N(good); i++) {
        struct cairn_annotation a[] = {{"cairn.io/snapshot", good[i][0]}};
        struct cairn_pvc_policy p;
        cairn_err err;
        int rc = cairn_pvc_policy_parse(a, 1, &p, &err);
        CHECK(rc == CAIRN_OK && p.snapshot == CAIRN_SNAPSHOT_EXEC &&
                  strcmp(p.snapshot_exec, good[i][1]) == 0,
              "'%s': rc %d kind %d name '%s'", good[i][0], rc, p.snapshot, p.snapshot_exec);
        cairn_pvc_policy_clear(&p);
    }
    for (i = 0; i < N(bad); i++) {
        struct cairn_annotation a[] = {{"cairn.io/snapshot", bad[i]}};
        struct cairn_pvc_policy p;
        const struct cairn_ann_problem *pr;
        cairn_err err;
        int rc = cairn_pvc_policy_parse(a, 1, &p, &err);
        pr = problem(&p, "cairn.io/snapshot", CAIRN_ANN_ERROR);
        CHECK(rc == CAIRN_FAILED && pr && !(p.valid & CAIRN_ANN_SNAPSHOT) &&
                  p.snapshot == CAIRN_SNAPSHOT_FILE && p.snapshot_exec[0] == 0 &&
                  !cairn_pvc_policy_can_backup(&p),
              "'%s' accepted: rc %d", bad[i], rc);
        cairn_pvc_policy_clear(&p);
    }
}

int main(void)
{
    test_full_good();
    test_defaults();
    test_all_bad_each_named();
    test_one_bad();
    test_combinations();
    test_unknown_and_caps();
    test_dns1123();
    test_exec_names();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_annotations: ok\n");
    return 0;
}

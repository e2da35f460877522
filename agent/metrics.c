/* agent/metrics.c — Prometheus metrics and the /metrics, /healthz, /readyz
 * server (see metrics.h). */
#define _GNU_SOURCE
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct series {
    char *ns, *pvc;
    double duration, last_success;
    uint64_t read, new_, stored;
    uint64_t failures, successes;
    int has_job;
    double quiesce[CAIRN_QUIESCE_METHODS]; /* the last hold, by method */
    unsigned has_quiesce;                  /* bit per method */
};

/* Upper bounds of cairn_backup_job_duration_seconds's buckets, in seconds
 * (the +Inf bucket is the count). */
static const double job_buckets[] = {1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200};
#define N_JOB_BUCKETS (sizeof job_buckets / sizeof *job_buckets)
/* cairn_quiesce_duration_seconds: a freeze is normally well under a second,
 * a database backup mode seconds to minutes; CAIRN_FREEZE_TIMEOUT (30 s by
 * default) bounds a freeze. */
static const double quiesce_buckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                         2.5,  5,     10,   30,  60,   120, 300};
#define N_QUIESCE_BUCKETS (sizeof quiesce_buckets / sizeof *quiesce_buckets)
#define MAX_BUCKETS 16

struct histogram {
    uint64_t bucket[MAX_BUCKETS]; /* observations in (previous bound, bound] */
    uint64_t count;
    double sum;
};

static const char *const quiesce_method[CAIRN_QUIESCE_METHODS] = {"fsfreeze", "postgres",
                                                                  "mysql"};

struct archives {
    struct cairn_archive_time v[CAIRN_METRICS_MAX_ARCHIVES];
    size_t n;
};

struct cairn_metrics {
    pthread_mutex_t mu;
    struct archives arch[2]; /* by enum cairn_archive_kind */
    struct histogram jobs[2]; /* [0] failure, [1] success */
    struct histogram quiesce[CAIRN_QUIESCE_METHODS];
    struct series *s;
    size_t n, max;
    uint64_t dropped;
    int64_t in_flight;
    int live, ready;
    uint64_t prunes_ok, prunes_failed, pruned_bytes;
    double last_prune;
    uint64_t vs_deleted, vs_failed, vs_pending;
    uint64_t exec_released, exec_failed;
};

int cairn_metrics_new(size_t max_series, cairn_metrics **out, cairn_err *err)
{
    cairn_metrics *m = calloc(1, sizeof *m);
    *out = NULL;
    if (!m || !(m->s = calloc(max_series ? max_series : 1, sizeof *m->s))) {
        free(m);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    m->max = max_series;
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return CAIRN_OK;
}

void cairn_metrics_free(cairn_metrics *m)
{
    size_t i;
    if (!m)
        return;
    for (i = 0; i < m->n; i++) {
        free(m->s[i].ns);
        free(m->s[i].pvc);
    }
    free(m->s);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void cairn_metrics_job_start(cairn_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->in_flight++;
    pthread_mutex_unlock(&m->mu);
}

/* mu held */
static struct series *series_get(cairn_metrics *m, const char *ns, const char *pvc)
{
    size_t i;
    for (i = 0; i < m->n; i++)
        if (strcmp(m->s[i].ns, ns) == 0 && strcmp(m->s[i].pvc, pvc) == 0)
            return &m->s[i];
    if (m->n >= m->max)
        return NULL;
    m->s[m->n].ns = strdup(ns);
    m->s[m->n].pvc = strdup(pvc);
    if (!m->s[m->n].ns || !m->s[m->n].pvc) {
        free(m->s[m->n].ns);
        free(m->s[m->n].pvc);
        m->s[m->n].ns = m->s[m->n].pvc = NULL;
        return NULL;
    }
    return &m->s[m->n++];
}

/* mu held */
static void observe(struct histogram *h, const double *bounds, size_t n, double v)
{
    size_t i;
    if (!(v >= 0)) /* NaN or a clock step: counted, as 0 */
        v = 0;
    for (i = 0; i < n && v > bounds[i]; i++)
        ;
    if (i < n)
        h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void cairn_metrics_job_end(cairn_metrics *m, const char *ns, const char *pvc, int ok,
                           double job_s, double duration_s, uint64_t bytes_read,
                           uint64_t bytes_new, uint64_t bytes_stored, double end_s)
{
    struct series *s;
    pthread_mutex_lock(&m->mu);
    if (m->in_flight > 0)
        m->in_flight--;
    observe(&m->jobs[ok != 0], job_buckets, N_JOB_BUCKETS, job_s);
    if (!(s = series_get(m, ns, pvc))) {
        m->dropped++;
    } else if (ok) {
        s->has_job = 1;
        s->duration = duration_s;
        s->read = bytes_read;
        s->new_ = bytes_new;
        s->stored = bytes_stored;
        s->last_success = end_s;
        s->successes++;
    } else {
        s->failures++;
    }
    pthread_mutex_unlock(&m->mu);
}

void cairn_metrics_quiesce(cairn_metrics *m, const char *ns, const char *pvc,
                           enum cairn_quiesce_method method, double seconds)
{
    struct series *s;
    if ((unsigned)method >= CAIRN_QUIESCE_METHODS)
        return;
    pthread_mutex_lock(&m->mu);
    observe(&m->quiesce[method], quiesce_buckets, N_QUIESCE_BUCKETS, seconds);
    /* a PVC beyond the limit is counted as dropped once, at its job's end */
    if ((s = series_get(m, ns, pvc))) {
        s->quiesce[method] = seconds >= 0 ? seconds : 0;
        s->has_quiesce |= 1u << method;
    }
    pthread_mutex_unlock(&m->mu);
}

void cairn_metrics_prune_end(cairn_metrics *m, int ok, double end_s, uint64_t freed)
{
    pthread_mutex_lock(&m->mu);
    if (ok) {
        m->prunes_ok++;
        m->last_prune = end_s;
        m->pruned_bytes += freed;
    } else {
        m->prunes_failed++;
    }
    pthread_mutex_unlock(&m->mu);
}

void cairn_metrics_vs_deletion(cairn_metrics *m, int ok)
{
    pthread_mutex_lock(&m->mu);
    if (ok)
        m->vs_deleted++;
    else
        m->vs_failed++;
    pthread_mutex_unlock(&m->mu);
}

void cairn_metrics_exec_release(cairn_metrics *m, int ok)
{
    pthread_mutex_lock(&m->mu);
    if (ok)
        m->exec_released++;
    else
        m->exec_failed++;
    pthread_mutex_unlock(&m->mu);
}

void cairn_metrics_vs_pending(cairn_metrics *m, size_t n)
{
    pthread_mutex_lock(&m->mu);
    m->vs_pending = n;
    pthread_mutex_unlock(&m->mu);
}

void cairn_metrics_set_live(cairn_metrics *m, int live)
{
    pthread_mutex_lock(&m->mu);
    m->live = live;
    pthread_mutex_unlock(&m->mu);
}

void cairn_metrics_set_ready(cairn_metrics *m, int ready)
{
    pthread_mutex_lock(&m->mu);
    m->ready = ready;
    pthread_mutex_unlock(&m->mu);
}

static void flags(cairn_metrics *m, int *live, int *ready)
{
    pthread_mutex_lock(&m->mu);
    *live = m->live;
    *ready = m->ready;
    pthread_mutex_unlock(&m->mu);
}

/* A label value: backslash, double quote and newline escaped. */
static int label(cairn_buf *b, const char *v)
{
    int rc = CAIRN_OK;
    for (; *v && rc == CAIRN_OK; v++) {
        if (*v == '\\' || *v == '"')
            rc = cairn_buf_appendf(b, "\\%c", *v);
        else if (*v == '\n')
            rc = cairn_buf_append(b, "\\n", 2);
        else
            rc = cairn_buf_putc(b, *v);
    }
    return rc;
}

static int labels(cairn_buf *b, const struct series *s, const char *key, const char *kind)
{
    int rc = cairn_buf_append(b, "{namespace=\"", 12);
    if (rc == CAIRN_OK)
        rc = label(b, s->ns);
    if (rc == CAIRN_OK)
        rc = cairn_buf_append(b, "\",pvc=\"", 7);
    if (rc == CAIRN_OK)
        rc = label(b, s->pvc);
    if (rc == CAIRN_OK && kind)
        rc = cairn_buf_appendf(b, "\",%s=\"%s", key, kind);
    if (rc == CAIRN_OK)
        rc = cairn_buf_append(b, "\"} ", 3);
    return rc;
}

enum field { F_DURATION, F_READ, F_NEW, F_STORED, F_SUCCESS, F_FAILURES, F_SUCCESSES };

static int family(cairn_metrics *m, cairn_buf *b, const char *name, const char *type,
                  const char *help, enum field f)
{
    size_t i;
    int rc = help ? cairn_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type)
                  : CAIRN_OK; /* NULL: the header was written already */
    for (i = 0; i < m->n && rc == CAIRN_OK; i++) {
        const struct series *s = &m->s[i];
        const char *kind = NULL;
        double v = 0;
        if (!s->has_job && (f == F_DURATION || f == F_READ || f == F_NEW || f == F_STORED ||
                            f == F_SUCCESS))
            continue;
        switch (f) {
        case F_DURATION: v = s->duration; break;
        case F_READ: v = (double)s->read; kind = "read"; break;
        case F_NEW: v = (double)s->new_; kind = "new"; break;
        case F_STORED: v = (double)s->stored; kind = "stored"; break;
        case F_SUCCESS: v = s->last_success; break;
        case F_FAILURES: v = (double)s->failures; break;
        case F_SUCCESSES: v = (double)s->successes; break;
        }
        if ((rc = cairn_buf_append(b, name, strlen(name))) == CAIRN_OK &&
            (rc = labels(b, s, "kind", kind)) == CAIRN_OK)
            rc = cairn_buf_appendf(b, "%.17g\n", v);
    }
    return rc;
}

static int archive_families(cairn_metrics *m, cairn_buf *b, enum cairn_archive_kind kind,
                            double now_s);

/* mu held: a histogram family with one label (key) taking the n values
 * val[], h[i] the histogram of val[i]; every series always (the buckets
 * cumulative, as the text format wants). */
static int histogram_family(cairn_buf *b, const char *name, const char *help, const char *key,
                            const char *const *val, const struct histogram *h, size_t n,
                            const double *bounds, size_t nb)
{
    size_t r, i;
    int rc = cairn_buf_appendf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (r = 0; r < n && rc == CAIRN_OK; r++) {
        uint64_t cum = 0;
        for (i = 0; i < nb && rc == CAIRN_OK; i++) {
            cum += h[r].bucket[i];
            rc = cairn_buf_appendf(b, "%s_bucket{%s=\"%s\",le=\"%g\"} %llu\n", name, key,
                                   val[r], bounds[i], (unsigned long long)cum);
        }
        if (rc == CAIRN_OK)
            rc = cairn_buf_appendf(b,
                                   "%s_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n"
                                   "%s_sum{%s=\"%s\"} %.17g\n"
                                   "%s_count{%s=\"%s\"} %llu\n",
                                   name, key, val[r], (unsigned long long)h[r].count, name, key,
                                   val[r], h[r].sum, name, key, val[r],
                                   (unsigned long long)h[r].count);
    }
    return rc;
}

/* mu held: cairn_backup_job_duration_seconds by result, and
 * cairn_quiesce_duration_seconds by method with the last hold per PVC. */
static int histograms(cairn_metrics *m, cairn_buf *b)
{
    static const char *const result[2] = {"failure", "success"};
    static const char last[] = "cairn_last_quiesce_duration_seconds";
    size_t i, q;
    int rc = histogram_family(b, "cairn_backup_job_duration_seconds",
                              "Wall time of the agent's backup jobs (quiesce, snapshot, copy) "
                              "since it started, by result.",
                              "result", result, m->jobs, 2, job_buckets, N_JOB_BUCKETS);
    if (rc == CAIRN_OK)
        rc = histogram_family(b, "cairn_quiesce_duration_seconds",
                              "How long the agent's jobs held workloads: filesystem frozen "
                              "(fsfreeze), PostgreSQL backup mode (postgres), MariaDB commits "
                              "blocked (mysql), failed jobs included.",
                              "method", quiesce_method, m->quiesce, CAIRN_QUIESCE_METHODS,
                              quiesce_buckets, N_QUIESCE_BUCKETS);
    if (rc == CAIRN_OK)
        rc = cairn_buf_appendf(b,
                               "# HELP %s The PVC's last hold by method (see "
                               "cairn_quiesce_duration_seconds).\n# TYPE %s gauge\n",
                               last, last);
    for (i = 0; i < m->n && rc == CAIRN_OK; i++)
        for (q = 0; q < CAIRN_QUIESCE_METHODS && rc == CAIRN_OK; q++)
            if ((m->s[i].has_quiesce & (1u << q)) &&
                (rc = cairn_buf_append(b, last, sizeof last - 1)) == CAIRN_OK &&
                (rc = labels(b, &m->s[i], "method", quiesce_method[q])) == CAIRN_OK)
                rc = cairn_buf_appendf(b, "%.17g\n", m->s[i].quiesce[q]);
    return rc;
}

int cairn_metrics_render(cairn_metrics *m, cairn_buf *b, cairn_err *err)
{
    int rc;
    pthread_mutex_lock(&m->mu);
    rc = family(m, b, "cairn_backup_duration_seconds", "gauge",
                "Duration of the last successful backup of the PVC.", F_DURATION);
    if (rc == CAIRN_OK)
        rc = cairn_buf_appendf(b, "# HELP cairn_backup_bytes Bytes of the last successful "
                               "backup: read from the volume, new to the repository, stored "
                               "after compression.\n# TYPE cairn_backup_bytes gauge\n");
    if (rc == CAIRN_OK)
        rc = family(m, b, "cairn_backup_bytes", NULL, NULL, F_READ);
    if (rc == CAIRN_OK)
        rc = family(m, b, "cairn_backup_bytes", NULL, NULL, F_NEW);
    if (rc == CAIRN_OK)
        rc = family(m, b, "cairn_backup_bytes", NULL, NULL, F_STORED);
    if (rc == CAIRN_OK)
        rc = family(m, b, "cairn_last_success_timestamp_seconds", "gauge",
                    "Time of the last successful backup of the PVC (Unix seconds).", F_SUCCESS);
    if (rc == CAIRN_OK)
        rc = family(m, b, "cairn_backup_failures_total", "counter",
                    "Failed backups of the PVC since the agent started.", F_FAILURES);
    if (rc == CAIRN_OK)
        rc = family(m, b, "cairn_backups_total", "counter",
                    "Successful backups of the PVC since the agent started.", F_SUCCESSES);
    if (rc == CAIRN_OK)
        rc = histograms(m, b);
    if (rc == CAIRN_OK)
        rc = cairn_buf_appendf(b,
                               "# HELP cairn_jobs_in_flight Backup jobs running now.\n"
                               "# TYPE cairn_jobs_in_flight gauge\ncairn_jobs_in_flight %lld\n"
                               "# HELP cairn_agent_ready 1 after the first complete pod list.\n"
                               "# TYPE cairn_agent_ready gauge\ncairn_agent_ready %d\n"
                               "# HELP cairn_metrics_dropped_series PVC results not exported "
                               "(more PVCs than the series limit).\n"
                               "# TYPE cairn_metrics_dropped_series counter\n"
                               "cairn_metrics_dropped_series %llu\n",
                               (long long)m->in_flight, m->ready,
                               (unsigned long long)m->dropped);
    if (rc == CAIRN_OK)
        rc = cairn_buf_appendf(b,
                               "# HELP cairn_prunes_total Prunes run by this agent since it "
                               "started.\n# TYPE cairn_prunes_total counter\n"
                               "cairn_prunes_total{result=\"ok\"} %llu\n"
                               "cairn_prunes_total{result=\"failed\"} %llu\n"
                               "# HELP cairn_prune_freed_bytes_total Bytes given back by this "
                               "agent's prunes.\n# TYPE cairn_prune_freed_bytes_total counter\n"
                               "cairn_prune_freed_bytes_total %llu\n",
                               (unsigned long long)m->prunes_ok,
                               (unsigned long long)m->prunes_failed,
                               (unsigned long long)m->pruned_bytes);
    if (rc == CAIRN_OK)
        rc = cairn_buf_appendf(b,
                               "# HELP cairn_volume_snapshots_deleted_total VolumeSnapshots "
                               "deleted by this agent because retention forgot their "
                               "snapshot.\n# TYPE cairn_volume_snapshots_deleted_total counter\n"
                               "cairn_volume_snapshots_deleted_total %llu\n"
                               "# HELP cairn_volume_snapshot_delete_failures_total Failed "
                               "deletions of such VolumeSnapshots (each retried later; the "
                               "snapshot is kept until then).\n"
                               "# TYPE cairn_volume_snapshot_delete_failures_total counter\n"
                               "cairn_volume_snapshot_delete_failures_total %llu\n"
                               "# HELP cairn_volume_snapshot_deletions_pending Snapshots "
                               "retention chose to forget, kept until their VolumeSnapshot is "
                               "deleted or their exec storage snapshot released.\n"
                               "# TYPE cairn_volume_snapshot_deletions_pending gauge\n"
                               "cairn_volume_snapshot_deletions_pending %llu\n"
                               "# HELP cairn_exec_snapshots_released_total Storage snapshots of "
                               "exec snapshots released by the configured release command "
                               "because retention forgot them.\n"
                               "# TYPE cairn_exec_snapshots_released_total counter\n"
                               "cairn_exec_snapshots_released_total %llu\n"
                               "# HELP cairn_exec_snapshot_release_failures_total Failed runs "
                               "of the release command (each retried later; the snapshot is "
                               "kept until then).\n"
                               "# TYPE cairn_exec_snapshot_release_failures_total counter\n"
                               "cairn_exec_snapshot_release_failures_total %llu\n",
                               (unsigned long long)m->vs_deleted,
                               (unsigned long long)m->vs_failed,
                               (unsigned long long)m->vs_pending,
                               (unsigned long long)m->exec_released,
                               (unsigned long long)m->exec_failed);
    if (rc == CAIRN_OK && m->prunes_ok)
        rc = cairn_buf_appendf(b,
                               "# HELP cairn_last_prune_timestamp_seconds Time of this agent's "
                               "last successful prune (Unix seconds).\n"
                               "# TYPE cairn_last_prune_timestamp_seconds gauge\n"
                               "cairn_last_prune_timestamp_seconds %.17g\n",
                               m->last_prune);
    if (rc == CAIRN_OK)
        rc = archive_families(m, b, CAIRN_ARCHIVE_WAL, (double)cairn_now_ns() / 1e9);
    if (rc == CAIRN_OK)
        rc = archive_families(m, b, CAIRN_ARCHIVE_BINLOG, (double)cairn_now_ns() / 1e9);
    pthread_mutex_unlock(&m->mu);
    if (rc != CAIRN_OK)
        return cairn_error(err, rc, "metrics exposition is too large or out of memory");
    return CAIRN_OK;
}

void cairn_metrics_set_archives(cairn_metrics *m, enum cairn_archive_kind kind,
                                const struct cairn_archive_time *v, size_t n)
{
    struct archives *a = &m->arch[kind == CAIRN_ARCHIVE_BINLOG];
    size_t i;
    pthread_mutex_lock(&m->mu);
    a->n = 0;
    for (i = 0; i < n; i++) {
        if (a->n == CAIRN_METRICS_MAX_ARCHIVES) {
            m->dropped += n - i;
            break;
        }
        a->v[a->n] = v[i];
        a->v[a->n].id[CAIRN_METRICS_ARCHIVE_ID_MAX - 1] = 0;
        a->n++;
    }
    pthread_mutex_unlock(&m->mu);
}

/* mu held: the lag and newest-time families of one kind of archive. */
static int archive_families(cairn_metrics *m, cairn_buf *b, enum cairn_archive_kind kind,
                            double now_s)
{
    static const struct {
        const char *lag, *lag_help, *ts, *ts_help, *label;
    } f[2] = {
        {"cairn_wal_archive_lag_seconds",
         "Seconds since the newest commit found in the archived WAL of the PostgreSQL system.",
         "cairn_wal_archive_last_commit_timestamp_seconds",
         "Time of the newest commit in the archived WAL (Unix seconds).", "system_id"},
        {"cairn_binlog_archive_lag_seconds",
         "Seconds since the newest event found in the archived binlogs of the server.",
         "cairn_binlog_archive_last_event_timestamp_seconds",
         "Time of the newest event in the archived binlogs (Unix seconds).", "server"},
    };
    const struct archives *a = &m->arch[kind == CAIRN_ARCHIVE_BINLOG];
    int k = kind == CAIRN_ARCHIVE_BINLOG, pass, rc = CAIRN_OK;
    size_t i;
    for (pass = 0; pass < 2 && rc == CAIRN_OK; pass++) {
        const char *name = pass ? f[k].ts : f[k].lag;
        rc = cairn_buf_appendf(b, "# HELP %s %s\n# TYPE %s gauge\n", name,
                               pass ? f[k].ts_help : f[k].lag_help, name);
        for (i = 0; i < a->n && rc == CAIRN_OK; i++) {
            double t = (double)a->v[i].newest_ns / 1e9, v = pass ? t : now_s - t;
            if (!pass && v < 0)
                v = 0; /* a clock step, or the database's clock ahead of ours */
            if ((rc = cairn_buf_appendf(b, "%s{%s=\"", name, f[k].label)) == CAIRN_OK &&
                (rc = label(b, a->v[i].id)) == CAIRN_OK)
                rc = cairn_buf_appendf(b, "\"} %.17g\n", v);
        }
    }
    return rc;
}

/* ---- the HTTP server ---- */

int cairn_metrics_listen(const char *addr, int port, int *fd_out, int *bound_port,
                         cairn_err *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, one = 1, family_ = AF_INET;
    memset(&ss, 0, sizeof ss);
    *fd_out = -1;
    if (port < 0 || port > 65535)
        return cairn_error(err, CAIRN_FAILED, "metrics port %d is out of range 0-65535", port);
    if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        len = sizeof *a;
    } else if (inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        len = sizeof *a;
        family_ = AF_INET6;
    } else {
        return cairn_error(err, CAIRN_FAILED,
                           "metrics address '%.64s' is not a numeric IPv4 or IPv6 address", addr);
    }
    if ((fd = socket(family_, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot create the metrics socket: %s",
                           strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 16) != 0) {
        int e = errno;
        close(fd);
        return cairn_error(err, CAIRN_FAILED, "cannot listen on %s:%d for /metrics: %s", addr,
                           port, strerror(e));
    }
    if (bound_port) {
        len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
            *bound_port = ntohs(family_ == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                   : ((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    *fd_out = fd;
    return CAIRN_OK;
}

static void respond(int fd, int code, const char *reason, const char *ctype, const char *body,
                    size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code, reason, ctype, len);
    if (cairn_write_all(fd, head, (size_t)n) == 0 && body && len)
        (void)cairn_write_all(fd, body, len);
}

static void text(int fd, int code, const char *reason, const char *body)
{
    respond(fd, code, reason, "text/plain; charset=utf-8", body, strlen(body));
}

static void handle(cairn_metrics *m, int fd)
{
    char req[CAIRN_METRICS_MAX_REQUEST + 1], *sp, *path, *q;
    size_t n = 0;
    int live, ready;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    for (;;) {
        ssize_t r;
        if (n == CAIRN_METRICS_MAX_REQUEST) {
            text(fd, 431, "Request Header Fields Too Large", "request too large\n");
            return;
        }
        r = recv(fd, req + n, CAIRN_METRICS_MAX_REQUEST - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return; /* timeout or closed before a whole request: nothing to answer */
        n += (size_t)r;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
            break;
    }
    if (!(sp = strchr(req, ' '))) {
        text(fd, 400, "Bad Request", "bad request\n");
        return;
    }
    *sp = 0;
    path = sp + 1;
    if (!(sp = strchr(path, ' '))) {
        text(fd, 400, "Bad Request", "bad request\n");
        return;
    }
    *sp = 0;
    if ((q = strchr(path, '?')))
        *q = 0;
    if (strcmp(req, "GET") != 0 && strcmp(req, "HEAD") != 0) {
        text(fd, 405, "Method Not Allowed", "only GET\n");
        return;
    }
    flags(m, &live, &ready);
    if (strcmp(path, "/healthz") == 0) {
        if (live)
            text(fd, 200, "OK", "ok\n");
        else
            text(fd, 503, "Service Unavailable", "the agent loop is not running\n");
    } else if (strcmp(path, "/readyz") == 0) {
        if (ready)
            text(fd, 200, "OK", "ok\n");
        else
            text(fd, 503, "Service Unavailable", "no complete pod list yet\n");
    } else if (strcmp(path, "/metrics") == 0) {
        cairn_buf b;
        cairn_err err;
        cairn_buf_init(&b, CAIRN_METRICS_MAX_RESPONSE);
        if (cairn_metrics_render(m, &b, &err) == CAIRN_OK)
            respond(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
                    strcmp(req, "HEAD") == 0 ? NULL : (const char *)b.data, b.len);
        else
            text(fd, 500, "Internal Server Error", "cannot render metrics\n");
        cairn_buf_free(&b);
    } else {
        text(fd, 404, "Not Found", "not found (try /metrics, /healthz, /readyz)\n");
    }
}

int cairn_metrics_serve(cairn_metrics *m, int fd, const volatile sig_atomic_t *stop)
{
    while (!stop || !*stop) {
        struct pollfd p = {fd, POLLIN, 0};
        int c, r = poll(&p, 1, 200);
        if (r <= 0)
            continue;
        c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        handle(m, c);
        shutdown(c, SHUT_WR);
        close(c);
    }
    return CAIRN_OK;
}

/* engine/lock.c — see lock.h. */
#define _GNU_SOURCE
#include "lock.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000LL

/* Who we are, to recognise our own host's dead processes. */
struct ident {
    char host[256];
    char boot_id[64];
    char pid_ns[64];
    int64_t pid;
    int64_t start_ticks; /* process start time in clock ticks since boot; 0 = unknown */
};

struct cairn_lock {
    cairn_repo *r;
    char key[128];
    json_t *obj;          /* the lease as written */
    int64_t ttl_ns;

    pthread_t thread;
    int have_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;             /* guarded by mu */
    int64_t last_ok_ns;   /* last successful write (guarded by mu) */
    cairn_err refresh_err;/* last refresh failure (guarded by mu) */
};

/* ---- identity ---- */

static void read_line(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "re");
    out[0] = 0;
    if (!f)
        return;
    if (fgets(out, (int)n, f)) {
        size_t l = strlen(out);
        while (l && (out[l - 1] == '\n' || out[l - 1] == ' '))
            out[--l] = 0;
    }
    fclose(f);
}

/* Field 22 of /proc/PID/stat (starttime). 0 if unknown, -1 if no such process
 * (or only a zombie: killed, not yet reaped). */
static int64_t proc_start_ticks(int64_t pid)
{
    char path[64], buf[1024], *p;
    FILE *f;
    size_t n;
    int field;
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? -1 : 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p)
        return 0;
    p++;
    /* fields after ')' start at 3 (state); starttime is 22 */
    for (field = 3; p && *p; field++) {
        while (*p == ' ')
            p++;
        if (field == 3 && (*p == 'Z' || *p == 'X'))
            return -1;
        if (field == 22)
            return strtoll(p, NULL, 10);
        p = strchr(p, ' ');
    }
    return 0;
}

static void ident_self(struct ident *me)
{
    ssize_t n;
    memset(me, 0, sizeof *me);
    if (gethostname(me->host, sizeof me->host) != 0)
        snprintf(me->host, sizeof me->host, "localhost");
    me->host[sizeof me->host - 1] = 0;
    read_line("/proc/sys/kernel/random/boot_id", me->boot_id, sizeof me->boot_id);
    n = readlink("/proc/self/ns/pid", me->pid_ns, sizeof me->pid_ns - 1);
    me->pid_ns[n > 0 ? n : 0] = 0;
    me->pid = (int64_t)getpid();
    me->start_ticks = proc_start_ticks(me->pid);
    if (me->start_ticks < 0)
        me->start_ticks = 0;
}

/* Whether the process that wrote a lease on this host is certainly gone. */
static int process_gone(int64_t pid, int64_t start_ticks)
{
    int64_t now_start;
    if (pid <= 0)
        return 0;
    now_start = proc_start_ticks(pid);
    if (now_start < 0)
        return 1;
    if (now_start > 0 && start_ticks > 0)
        return now_start != start_ticks; /* the pid was reused */
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 1;
    return 0;
}

/* ---- lease objects ---- */

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void info_from(json_t *o, const char *key, const struct ident *me, int64_t now,
                      struct cairn_lock_info *info)
{
    memset(info, 0, sizeof *info);
    snprintf(info->key, sizeof info->key, "%s", key);
    if (!o || !json_is_object(o))
        return;
    info->readable = 1;
    info->exclusive = strcmp(jstr(o, "kind"), "exclusive") == 0;
    snprintf(info->operation, sizeof info->operation, "%s", jstr(o, "operation"));
    snprintf(info->host, sizeof info->host, "%s", jstr(o, "host"));
    info->pid = json_integer_value(json_object_get(o, "pid"));
    info->time_ns = json_integer_value(json_object_get(o, "time_ns"));
    info->expires_ns = json_integer_value(json_object_get(o, "expires_ns"));
    if (now > info->expires_ns) {
        info->stale = 1;
        info->why_stale = "expired";
    } else if (me && *me->boot_id && strcmp(info->host, me->host) == 0 &&
               strcmp(jstr(o, "boot_id"), me->boot_id) == 0 &&
               strcmp(jstr(o, "pid_ns"), me->pid_ns) == 0 &&
               !(info->pid == me->pid &&
                 json_integer_value(json_object_get(o, "start_ticks")) == me->start_ticks) &&
               process_gone(info->pid, json_integer_value(json_object_get(o, "start_ticks")))) {
        info->stale = 1;
        info->why_stale = "process is gone";
    }
}

static void short_time(int64_t ns, char *out, size_t n)
{
    char *dot;
    cairn_format_time(ns, out, n);
    dot = strchr(out, '.');
    if (dot && (size_t)(dot - out) + 2 <= n) {
        dot[0] = 'Z';
        dot[1] = 0;
    }
}

void cairn_lock_describe(const struct cairn_lock_info *info, char *out, size_t outlen)
{
    char since[48], until[48];
    const char *slash = strrchr(info->key, '/');
    const char *id = slash ? slash + 1 : info->key;
    if (!info->readable) {
        snprintf(out, outlen, "unreadable lock object 'locks/%.12s'", id);
        return;
    }
    short_time(info->time_ns, since, sizeof since);
    short_time(info->expires_ns, until, sizeof until);
    snprintf(out, outlen, "%s lock 'locks/%.12s' of %s on host '%s' (pid %lld), since %s, expires %s",
             info->exclusive ? "exclusive" : "shared", id,
             *info->operation ? info->operation : "an unknown operation", info->host,
             (long long)info->pid, since, until);
}

struct key_list {
    char **v;
    size_t n, cap;
};

static int collect_key(void *arg, const char *key, uint64_t size)
{
    struct key_list *l = arg;
    (void)size;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv)
            return 1;
        l->v = nv;
        l->cap = ncap;
    }
    if (!(l->v[l->n] = strdup(key)))
        return 1;
    l->n++;
    return 0;
}

static void key_list_free(struct key_list *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* Lists leases; skip = our own key (or NULL). Objects that vanish while being
 * read are left out. */
static int list_leases(cairn_repo *r, const char *skip, cairn_lock_cb cb, void *arg,
                       cairn_err *err)
{
    cairn_store *s = cairn_repo_store(r);
    struct key_list l;
    struct ident me;
    cairn_buf b = CAIRN_BUF_INIT;
    size_t i;
    int rc;
    memset(&l, 0, sizeof l);
    ident_self(&me);
    rc = cairn_store_list(s, "locks/", collect_key, &l, err);
    if (rc != CAIRN_OK) {
        key_list_free(&l);
        return cairn_error_prefix(err, "cannot list the locks of '%s'", s->url);
    }
    for (i = 0; rc == CAIRN_OK && i < l.n; i++) {
        struct cairn_lock_info info;
        cairn_err ge;
        json_t *o = NULL;
        int grc;
        if (skip && strcmp(l.v[i], skip) == 0)
            continue;
        grc = cairn_store_get(s, l.v[i], &b, CAIRN_LOCK_MAX, &ge);
        if (grc == CAIRN_NOTFOUND)
            continue;
        if (grc == CAIRN_OK)
            o = json_loadb((const char *)b.data, b.len, 0, NULL);
        else if (grc == CAIRN_RETRY || grc == CAIRN_FATAL) {
            rc = cairn_error(err, grc, "cannot read lock '%s': %s", l.v[i], ge.msg);
            break;
        }
        info_from(o, l.v[i], &me, cairn_now_ns(), &info);
        json_decref(o);
        rc = cb(arg, &info);
    }
    cairn_buf_free(&b);
    key_list_free(&l);
    return rc;
}

int cairn_lock_list(cairn_repo *r, cairn_lock_cb cb, void *arg, cairn_err *err)
{
    return list_leases(r, NULL, cb, arg, err);
}

int cairn_lock_remove(cairn_repo *r, const char *key, cairn_err *err)
{
    int rc;
    if (strncmp(key, "locks/", 6) != 0 || strchr(key + 6, '/'))
        return cairn_error(err, CAIRN_FAILED, "'%s' is not a lock object", key);
    rc = cairn_store_del(cairn_repo_store(r), key, err);
    return rc == CAIRN_NOTFOUND ? CAIRN_OK : rc;
}

/* ---- acquiring ---- */

static int write_lease(cairn_lock *l, cairn_err *err)
{
    int64_t now = cairn_now_ns();
    char *text;
    int rc;
    json_object_set_new(l->obj, "time_ns", json_integer(now));
    json_object_set_new(l->obj, "expires_ns", json_integer(now + l->ttl_ns));
    text = json_dumps(l->obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    rc = cairn_store_put(cairn_repo_store(l->r), l->key, text, strlen(text), 1, err);
    if (rc == CAIRN_OK)
        rc = cairn_store_flush(cairn_repo_store(l->r), err);
    free(text);
    if (rc == CAIRN_OK) {
        pthread_mutex_lock(&l->mu);
        l->last_ok_ns = now;
        pthread_mutex_unlock(&l->mu);
    }
    return rc;
}

static void *refresher(void *arg)
{
    cairn_lock *l = arg;
    int64_t every = l->ttl_ns / 12 > NS ? l->ttl_ns / 12 : NS; /* at most once a second */
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        struct timespec ts;
        int64_t at;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        at = (int64_t)ts.tv_sec * NS + ts.tv_nsec + every;
        ts.tv_sec = (time_t)(at / NS);
        ts.tv_nsec = (long)(at % NS);
        if (pthread_cond_timedwait(&l->cv, &l->mu, &ts) == ETIMEDOUT && !l->stop) {
            cairn_err e;
            int rc;
            pthread_mutex_unlock(&l->mu);
            rc = write_lease(l, &e);
            pthread_mutex_lock(&l->mu);
            if (rc != CAIRN_OK)
                l->refresh_err = e;
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

struct conflict_ctx {
    enum cairn_lock_kind kind;
    int found;
    char what[600];
};

static int find_conflict(void *arg, const struct cairn_lock_info *info)
{
    struct conflict_ctx *c = arg;
    if (info->readable && info->stale)
        return 0;
    if (c->kind == CAIRN_LOCK_SHARED && info->readable && !info->exclusive)
        return 0;
    cairn_lock_describe(info, c->what, sizeof c->what);
    c->found = 1;
    return 1; /* stop listing */
}

static void lock_free(cairn_lock *l)
{
    if (!l)
        return;
    json_decref(l->obj);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

const char *cairn_lock_key(const cairn_lock *l)
{
    return l->key;
}

int cairn_lock_acquire(cairn_repo *r, enum cairn_lock_kind kind,
                       const struct cairn_lock_opts *opts, cairn_lock **out, cairn_err *err)
{
    static const struct cairn_lock_opts defaults = {NULL, 0, 0, 0};
    cairn_lock *l;
    struct ident me;
    uint8_t rnd[32];
    char hex[CAIRN_HEX_LEN + 1];
    double deadline;
    int rc;
    *out = NULL;
    if (!opts)
        opts = &defaults;
    deadline = cairn_mono() + (double)opts->wait_ns / NS;
    l = calloc(1, sizeof *l);
    if (!l)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    pthread_mutex_init(&l->mu, NULL);
    {
        /* refresh on the monotonic clock: a wall-clock jump must not delay it */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&l->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    l->r = r;
    l->ttl_ns = opts->ttl_ns > 0 ? opts->ttl_ns : CAIRN_LOCK_TTL_NS;
    cairn_random(rnd, sizeof rnd);
    cairn_hex(rnd, sizeof rnd, hex);
    snprintf(l->key, sizeof l->key, "locks/%s", hex);
    ident_self(&me);
    l->obj = json_pack("{s:i, s:s, s:s, s:s, s:I, s:s, s:s, s:I}", "version", 1, "kind",
                       kind == CAIRN_LOCK_EXCLUSIVE ? "exclusive" : "shared", "operation",
                       opts->operation ? opts->operation : "", "host", me.host, "pid",
                       (json_int_t)me.pid, "boot_id", me.boot_id, "pid_ns", me.pid_ns,
                       "start_ticks", (json_int_t)me.start_ticks);
    if (!l->obj) {
        lock_free(l);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    for (;;) {
        struct conflict_ctx cc;
        cairn_err de;
        if ((rc = write_lease(l, err)) != CAIRN_OK) {
            cairn_error_prefix(err, "cannot write lock '%s'", l->key);
            cairn_store_del(cairn_repo_store(r), l->key, &de);
            lock_free(l);
            return rc;
        }
        memset(&cc, 0, sizeof cc);
        cc.kind = kind;
        rc = list_leases(r, l->key, find_conflict, &cc, err);
        if (rc == CAIRN_OK && !cc.found)
            break;
        /* refused (or could not tell): withdraw, then retry or give up */
        cairn_store_del(cairn_repo_store(r), l->key, &de);
        if (rc != CAIRN_OK && rc != 1) {
            lock_free(l);
            return rc;
        }
        if (cairn_mono() >= deadline) {
            rc = cairn_error(err, CAIRN_RETRY,
                             "the repository is locked: %s; try again when it has finished (if "
                             "that process no longer runs, its lock is ignored once it expires, "
                             "at once on its own host; 'cairn unlock --remove-all' removes it "
                             "now)",
                             cc.what);
            lock_free(l);
            return rc;
        }
        {
            /* 1..3 s with jitter, so two waiters do not keep colliding */
            uint8_t j;
            struct timespec ts;
            cairn_random(&j, 1);
            ts.tv_sec = 1 + j % 2;
            ts.tv_nsec = (long)(j % 100) * 10000000L;
            nanosleep(&ts, NULL);
        }
    }
    if (pthread_create(&l->thread, NULL, refresher, l) == 0)
        l->have_thread = 1;
    if (!opts->no_sync && (rc = cairn_repo_sync(r, 0, err)) != CAIRN_OK) {
        cairn_error_prefix(err, "after taking lock '%s'", l->key);
        cairn_lock_release(l, NULL);
        return rc;
    }
    *out = l;
    return CAIRN_OK;
}

int cairn_lock_check(cairn_lock *l, cairn_err *err)
{
    int64_t last, now = cairn_now_ns();
    cairn_err why;
    pthread_mutex_lock(&l->mu);
    last = l->last_ok_ns;
    why = l->refresh_err;
    pthread_mutex_unlock(&l->mu);
    /* a tenth of the ttl as a margin for clock differences */
    if (now < last + l->ttl_ns - l->ttl_ns / 10)
        return CAIRN_OK;
    return cairn_error(err, CAIRN_FATAL,
                       "lock '%s' may have expired: it could not be refreshed since %lld s "
                       "ago (%s); stopping so that nothing is deleted without it",
                       l->key, (long long)((now - last) / NS), why.code ? why.msg : "no error");
}

int cairn_lock_release(cairn_lock *l, cairn_err *err)
{
    cairn_err e;
    int rc;
    if (!l)
        return CAIRN_OK;
    if (l->have_thread) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    rc = cairn_store_del(cairn_repo_store(l->r), l->key, err ? err : &e);
    if (rc == CAIRN_NOTFOUND)
        rc = CAIRN_OK;
    lock_free(l);
    return rc;
}

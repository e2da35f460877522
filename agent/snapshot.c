/* agent/snapshot.c — quiesce + snapshot + backup for one PVC (see
 * snapshot.h). */
#define _GNU_SOURCE
#include "snapshot.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../engine/policy.h"
#include "pg.h"
#include "quiesce.h"

#define SNAP_API "/apis/snapshot.storage.k8s.io/v1"
#define SECRET_MAX_VALUE 4096
#define EXEC_MAX_LINES 200   /* output lines logged per command */
#define EXEC_LINE_MAX 512
#define EXEC_OUT_MAX 4096    /* $CAIRN_SNAPSHOT_OUT read at most */
#define BTRFS_FIRST_SUBVOL_INO 256

/* ---- configuration ---- */

static int env_ms(const char *var, int64_t def_ms, int64_t *out, cairn_err *err)
{
    const char *v = getenv(var);
    const char *p;
    int64_t s;
    cairn_err e;
    *out = def_ms;
    if (!v || !*v)
        return CAIRN_OK;
    for (p = v; isdigit((unsigned char)*p); p++)
        ;
    if (!*p && p - v <= 9) {
        *out = strtoll(v, NULL, 10) * 1000;
    } else if (cairn_parse_duration(v, &s, &e) == CAIRN_OK) {
        *out = s * 1000;
    } else {
        return cairn_error(err, CAIRN_FAILED, "%s: %s", var, e.msg);
    }
    if (*out <= 0)
        return cairn_error(err, CAIRN_FAILED, "%s must be at least 1 second", var);
    return CAIRN_OK;
}

int cairn_snap_config_from_env(struct cairn_snap_config *c, cairn_err *err)
{
    const char *sd = getenv("CAIRN_STATE_DIR"), *poll = getenv("CAIRN_SNAPSHOT_POLL_MS");
    int rc;
    memset(c, 0, sizeof *c);
    if (!sd || !*sd)
        sd = CAIRN_STATE_DIR;
    if (sd[0] != '/' || strlen(sd) >= sizeof c->state_dir - 64)
        return cairn_error(err, CAIRN_FAILED,
                           "CAIRN_STATE_DIR '%.64s' must be an absolute path of at most %zu "
                           "bytes",
                           sd, sizeof c->state_dir - 64);
    snprintf(c->state_dir, sizeof c->state_dir, "%s", sd);
    if ((rc = env_ms("CAIRN_FREEZE_TIMEOUT", CAIRN_FREEZE_TIMEOUT_MS, &c->freeze_timeout_ms,
                     err)) != CAIRN_OK ||
        (rc = env_ms("CAIRN_CSI_READY_TIMEOUT", 600000, &c->csi_ready_timeout_ms, err)) !=
            CAIRN_OK ||
        (rc = env_ms("CAIRN_QUIESCE_WARN", 10000, &c->quiesce_warn_ms, err)) != CAIRN_OK ||
        (rc = env_ms("CAIRN_RELEASE_TIMEOUT", 120000, &c->release_timeout_ms, err)) != CAIRN_OK ||
        (rc = cairn_copy_config_from_env(&c->copy, err)) != CAIRN_OK)
        return rc;
    c->poll_ms = 1000;
    if (poll && *poll) {
        char *end;
        long n = strtol(poll, &end, 10);
        if (*end || n < 10 || n > 60000)
            return cairn_error(err, CAIRN_FAILED,
                               "CAIRN_SNAPSHOT_POLL_MS '%.32s' is not a number in 10-60000", poll);
        c->poll_ms = n;
    }
    return CAIRN_OK;
}

/* The configured command for exec (name "" = the default entry): the value
 * of CAIRN_SNAPSHOT_EXEC[_NAME]; var gets the variable's name. */
static const char *exec_command(const char *name, char *var, size_t varlen)
{
    size_t o;
    o = (size_t)snprintf(var, varlen, "CAIRN_SNAPSHOT_EXEC%s", name[0] ? "_" : "");
    for (; *name && o + 1 < varlen; name++)
        var[o++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    var[o] = 0;
    return getenv(var);
}

int cairn_snap_plan_check(const struct cairn_pvc_policy *p, const struct cairn_snap_config *c,
                          char *msg, size_t msglen)
{
    if (p->snapshot == CAIRN_SNAPSHOT_CSI && p->csi_copy != CAIRN_CSI_COPY_OFF &&
        !c->copy.image[0] && (!c->copy.pod_ns[0] || !c->copy.pod_name[0])) {
        snprintf(msg, msglen,
                 "cairn.io/csi-copy '%s': the agent does not know the image for its copy Job "
                 "(the platform team sets CAIRN_COPY_IMAGE, or POD_NAME and POD_NAMESPACE as "
                 "daemonset/daemonset.yaml does): no backup taken",
                 cairn_csi_copy_name(p->csi_copy));
        return -1;
    }
    if (p->quiesce == CAIRN_QUIESCE_MYSQL && p->snapshot == CAIRN_SNAPSHOT_FILE) {
        snprintf(msg, msglen,
                 "cairn.io/quiesce 'mysql' needs an atomic snapshot (cairn.io/snapshot 'btrfs', "
                 "'csi' or 'exec'): a file copy of live InnoDB files is not consistent even "
                 "while commits are blocked: no backup taken");
        return -1;
    }
    if (p->snapshot == CAIRN_SNAPSHOT_EXEC) {
        char var[80];
        const char *cmd = exec_command(p->snapshot_exec, var, sizeof var);
        struct stat st;
        if (!cmd || !*cmd) {
            snprintf(msg, msglen,
                     "cairn.io/snapshot '%s%s%s': no command is configured for it in the agent "
                     "(the platform team sets %s in the agent's ConfigMap): no backup taken",
                     "exec", p->snapshot_exec[0] ? ":" : "", p->snapshot_exec, var);
            return -1;
        }
        if (cmd[0] != '/' || stat(cmd, &st) != 0 || !S_ISREG(st.st_mode) ||
            !(st.st_mode & 0111)) {
            snprintf(msg, msglen,
                     "cairn.io/snapshot exec: %s '%.200s' is not an executable file given by "
                     "its absolute path: no backup taken",
                     var, cmd);
            return -1;
        }
    }
    return 0;
}

/* ---- helpers ---- */

static void jlog(const struct cairn_snap_job *j, enum cairn_snap_log_level l, const char *fmt,
                 ...) __attribute__((format(printf, 3, 4)));
static void jlog(const struct cairn_snap_job *j, enum cairn_snap_log_level l, const char *fmt,
                 ...)
{
    char msg[1536];
    va_list ap;
    if (!j->log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    j->log(j->log_arg, l, msg);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int64_t mono_ms(void) { return (int64_t)(cairn_mono() * 1000); }

/* ---- credentials ---- */

struct creds {
    const char *kw[8];
    char *val[8];
    size_t n;
};

static void creds_wipe(struct creds *c)
{
    size_t i;
    for (i = 0; i < c->n; i++) {
        if (c->val[i]) {
            explicit_bzero(c->val[i], strlen(c->val[i]));
            free(c->val[i]);
        }
    }
    memset(c, 0, sizeof *c);
}

/* Reads the Secret and maps its keys (map[i][0]) to keywords (map[i][1]):
 * libpq's for postgres, option-file names for mysql. */
static const char *const pg_keys[][2] = {
    {"host", "host"},         {"port", "port"},         {"user", "user"},
    {"username", "user"},     {"password", "password"}, {"dbname", "dbname"},
    {"database", "dbname"},   {"sslmode", "sslmode"},
};
static const char *const my_keys[][2] = {
    {"host", "host"},         {"port", "port"},         {"socket", "socket"},
    {"user", "user"},         {"username", "user"},     {"password", "password"},
};

static const char *creds_get(const struct creds *c, const char *kw)
{
    size_t i;
    for (i = 0; i < c->n; i++)
        if (strcmp(c->kw[i], kw) == 0)
            return c->val[i];
    return NULL;
}

static int read_creds(const struct cairn_snap_job *j, const char *const (*map)[2], size_t n_map,
                      struct creds *c, cairn_err *err)
{
    char path[700];
    json_t *sec = NULL, *data;
    size_t i;
    int rc;
    memset(c, 0, sizeof *c);
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/secrets/%s", j->ns,
             j->policy->credentials_secret);
    rc = cairn_kube_get_json(j->kube, path, &sec, err);
    if (rc == CAIRN_NOTFOUND)
        return cairn_error(err, CAIRN_FAILED,
                           "the Secret '%s' named by cairn.io/credentials-secret does not exist "
                           "in namespace '%s'",
                           j->policy->credentials_secret, j->ns);
    if (rc != CAIRN_OK)
        return cairn_error_prefix(err, "cannot read the Secret '%s' (cairn.io/credentials-secret)",
                                  j->policy->credentials_secret);
    data = json_object_get(sec, "data");
    for (i = 0; i < n_map && c->n < 7; i++) {
        const char *b64 = json_string_value(json_object_get(data, map[i][0]));
        cairn_buf b = CAIRN_BUF_INIT;
        size_t k, dup = 0;
        if (!b64)
            continue;
        for (k = 0; k < c->n; k++)
            dup |= strcmp(c->kw[k], map[i][1]) == 0;
        if (dup)
            continue;
        cairn_buf_init(&b, SECRET_MAX_VALUE);
        if (cairn_b64_decode(b64, &b) != CAIRN_OK || memchr(b.data, 0, b.len)) {
            if (b.data)
                explicit_bzero(b.data, b.cap);
            cairn_buf_free(&b);
            json_decref(sec);
            creds_wipe(c);
            return cairn_error(err, CAIRN_FAILED,
                               "the Secret '%s': key '%s' is not valid base64 text of at most "
                               "%d bytes",
                               j->policy->credentials_secret, map[i][0], SECRET_MAX_VALUE);
        }
        c->kw[c->n] = map[i][1];
        c->val[c->n] = strdup(cairn_buf_cstr(&b));
        explicit_bzero(b.data, b.cap);
        cairn_buf_free(&b);
        if (!c->val[c->n]) {
            json_decref(sec);
            creds_wipe(c);
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        }
        c->n++;
    }
    /* the JSON held the base64 values: wipe its strings before freeing */
    if (json_is_object(data)) {
        const char *key;
        json_t *v;
        json_object_foreach(data, key, v)
        {
            if (json_is_string(v)) {
                char *s = (char *)json_string_value(v);
                explicit_bzero(s, strlen(s));
            }
        }
    }
    json_decref(sec);
    if (!c->n)
        return cairn_error(err, CAIRN_FAILED,
                           "the Secret '%s' has none of the keys %s",
                           j->policy->credentials_secret,
                           map == my_keys ? "host, port, socket, user (or username), password"
                                          : "host, port, user (or username), password, dbname "
                                            "(or database), sslmode");
    c->kw[c->n] = NULL;
    return CAIRN_OK;
}

/* PGDATA inside the volume: the volume itself, or one directory below it
 * (the official image's PGDATA=/var/lib/postgresql/data/pgdata). rel gets ""
 * or the directory's name. */
static int find_pgdata(const char *root, char *rel, size_t rellen, cairn_err *err)
{
    char p[PATH_MAX + 300];
    struct stat st;
    DIR *d;
    struct dirent *de;
    int found = 0;
    snprintf(p, sizeof p, "%s/PG_VERSION", root);
    rel[0] = 0;
    if (stat(p, &st) == 0)
        return CAIRN_OK;
    if (!(d = opendir(root)))
        return cairn_error(err, CAIRN_FAILED, "cannot read '%s': %s", root, strerror(errno));
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s/PG_VERSION", root, de->d_name);
        if (stat(p, &st) == 0) {
            found++;
            snprintf(rel, rellen, "%s", de->d_name);
        }
    }
    closedir(d);
    if (found == 1)
        return CAIRN_OK;
    rel[0] = 0;
    return cairn_error(err, CAIRN_FAILED,
                       found ? "the volume '%s' holds several PostgreSQL data directories: "
                               "cairn.io/quiesce 'postgres' needs exactly one"
                             : "no PostgreSQL data directory (PG_VERSION) in the volume '%s' or "
                               "one directory below it",
                       root);
}

/* ---- btrfs ---- */

static int btrfs_check(const char *path, cairn_err *err)
{
    struct statfs sf;
    struct stat st;
    if (statfs(path, &sf) != 0 || stat(path, &st) != 0)
        return cairn_error(err, CAIRN_FAILED, "cannot stat '%s': %s", path, strerror(errno));
    if ((unsigned long)sf.f_type != (unsigned long)BTRFS_SUPER_MAGIC)
        return cairn_error(err, CAIRN_FAILED,
                           "cairn.io/snapshot 'btrfs': the volume at '%s' is not on btrfs "
                           "(use 'file', 'csi' or 'exec')",
                           path);
    if (st.st_ino != BTRFS_FIRST_SUBVOL_INO)
        return cairn_error(err, CAIRN_FAILED,
                           "cairn.io/snapshot 'btrfs': '%s' is on btrfs but is not a subvolume "
                           "(only a whole subvolume can be snapshotted)",
                           path);
    return CAIRN_OK;
}

static int btrfs_snapshot(const char *vol, char *name, size_t namelen, cairn_err *err)
{
    struct btrfs_ioctl_vol_args_v2 a;
    uint8_t rnd[6];
    char hex[13];
    int fd, rc = CAIRN_OK;
    cairn_random(rnd, sizeof rnd);
    cairn_hex(rnd, sizeof rnd, hex);
    snprintf(name, namelen, ".cairn-snapshot-%s", hex);
    if ((fd = open(vol, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot open '%s': %s", vol, strerror(errno));
    memset(&a, 0, sizeof a);
    a.fd = fd; /* the source subvolume; the snapshot goes into it too */
    a.flags = BTRFS_SUBVOL_RDONLY;
    snprintf(a.name, sizeof a.name, "%s", name);
    if (ioctl(fd, BTRFS_IOC_SNAP_CREATE_V2, &a) != 0)
        rc = cairn_error(err, CAIRN_FAILED,
                         "cannot create a btrfs snapshot of '%s': %s%s", vol, strerror(errno),
                         errno == EPERM ? " (the agent needs CAP_SYS_ADMIN)" : "");
    close(fd);
    return rc;
}

static int btrfs_delete(const char *vol, const char *name, cairn_err *err)
{
    struct btrfs_ioctl_vol_args a;
    int fd, rc = CAIRN_OK;
    if ((fd = open(vol, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot open '%s': %s", vol, strerror(errno));
    memset(&a, 0, sizeof a);
    snprintf(a.name, sizeof a.name, "%s", name);
    if (ioctl(fd, BTRFS_IOC_SNAP_DESTROY, &a) != 0)
        rc = cairn_error(err, CAIRN_FAILED,
                         "cannot delete the btrfs snapshot '%s/%s': %s (delete it with `btrfs "
                         "subvolume delete`)",
                         vol, name, strerror(errno));
    close(fd);
    return rc;
}

/* ---- exec ---- */

struct exec_result {
    char path[PATH_MAX];   /* path=... from $CAIRN_SNAPSHOT_OUT, "" = none */
    char handle[256];      /* handle=... */
};

/* A configured command: run without a shell (execve of cmd, no arguments),
 * in its own process group, stdin /dev/null, working directory /, only
 * envp; its output logged line by line as "<who>: <var>: <line>" (at most
 * EXEC_MAX_LINES lines of EXEC_LINE_MAX bytes); killed (the whole group) at
 * deadline_ms, or when abort(abort_arg) says so. */
struct command {
    const char *cmd, *var, *who;
    char *const *envp;
    int64_t deadline_ms;
    const char *timeout_msg; /* "did not finish within <what>: killed; <consequence>" */
    int (*abort)(void *arg); /* may be NULL */
    void *abort_arg;
    void (*log)(void *arg, enum cairn_snap_log_level lvl, const char *msg);
    void *log_arg;
};

static void cmd_line(const struct command *c, char *line, size_t *n, unsigned *lines)
{
    char msg[EXEC_LINE_MAX + 600];
    line[*n] = 0;
    if ((*lines)++ < EXEC_MAX_LINES && c->log) {
        snprintf(msg, sizeof msg, "%s: %s: %s", c->who, c->var, line);
        c->log(c->log_arg, CAIRN_SNAP_LOG_INFO, msg);
    }
    *n = 0;
}

/* CAIRN_OK when the command exited 0; otherwise an error naming it. */
static int run_command(const struct command *c, cairn_err *err)
{
    char *argv[2];
    char line[EXEC_LINE_MAX + 1];
    size_t ln = 0, i;
    unsigned lines = 0;
    int p[2], status = 0, timed_out = 0, aborted = 0, eof = 0;
    pid_t pid;

    argv[0] = (char *)c->cmd;
    argv[1] = NULL;
    if (pipe2(p, O_CLOEXEC) != 0)
        return cairn_error(err, CAIRN_FAILED, "cannot create a pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return cairn_error(err, CAIRN_FAILED, "cannot start '%s': %s", c->cmd, strerror(errno));
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        setpgid(0, 0);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        if (chdir("/") == 0)
            execve(c->cmd, argv, c->envp);
        _exit(127);
    }
    close(p[1]);
    while (!eof) {
        struct pollfd pf = {p[0], POLLIN, 0};
        int64_t left = c->deadline_ms - mono_ms();
        char buf[1024];
        ssize_t r;
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        if (c->abort && c->abort(c->abort_arg)) {
            aborted = 1;
            break;
        }
        if (poll(&pf, 1, left > 200 ? 200 : (int)left) <= 0)
            continue;
        r = read(p[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            eof = 1;
            break;
        }
        for (i = 0; i < (size_t)r; i++) {
            if (buf[i] == '\n' || ln == EXEC_LINE_MAX)
                cmd_line(c, line, &ln, &lines);
            if (buf[i] != '\n')
                line[ln++] = isprint((unsigned char)buf[i]) ? buf[i] : '?';
        }
    }
    if (ln)
        cmd_line(c, line, &ln, &lines);
    close(p[0]);
    if (timed_out || aborted)
        kill(-pid, SIGKILL);
    /* the output ended: the command exits soon (bounded by the deadline) */
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            status = -1;
            break;
        }
        if (!timed_out && !aborted && mono_ms() >= c->deadline_ms) {
            timed_out = 1;
            kill(-pid, SIGKILL);
        }
        if (!timed_out && !aborted && c->abort && c->abort(c->abort_arg)) {
            aborted = 1;
            kill(-pid, SIGKILL);
        }
        sleep_ms(20);
    }
    if (timed_out)
        return cairn_error(err, CAIRN_FAILED, "%s '%s' %s", c->var, c->cmd, c->timeout_msg);
    if (aborted)
        return cairn_error(err, CAIRN_FAILED, "%s '%s' was killed: the agent is stopping",
                           c->var, c->cmd);
    if (WIFSIGNALED(status))
        return cairn_error(err, CAIRN_FAILED, "%s '%s' was killed by signal %d", c->var, c->cmd,
                           WTERMSIG(status));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return cairn_error(err, CAIRN_FAILED,
                           "%s '%s' failed with exit status %d (its output is in the agent's "
                           "log)",
                           c->var, c->cmd, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return CAIRN_OK;
}

/* The environment of a configured command: envp[0..n) (at most max - 1;
 * NULL-terminated); entries that do not fit or cannot be allocated are left
 * out. Freed by env_free. */
static void env_add(char **envp, size_t max, size_t *n, const char *key, const char *val)
{
    if (*n + 1 < max && asprintf(&envp[*n], "%s=%s", key, val ? val : "") >= 0)
        (*n)++;
    envp[*n] = NULL;
}

static void env_free(char **envp, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        free(envp[i]);
}

static const char *env_path(void)
{
    const char *path = getenv("PATH");
    return path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}

/* Runs the configured snapshot command with the job's environment until
 * deadline_ms; xr gets what it wrote to outfile. */
static int run_exec(const struct cairn_snap_job *j, const char *cmd, const char *var,
                    const char *outfile, int64_t deadline_ms, struct exec_result *xr,
                    cairn_err *err)
{
    char *envp[16], who[400];
    size_t n_env = 0;
    struct command c;
    int rc;

    memset(xr, 0, sizeof *xr);
    envp[0] = NULL;
    env_add(envp, 16, &n_env, "PATH", env_path());
    env_add(envp, 16, &n_env, "CAIRN_PVC_NAMESPACE", j->ns);
    env_add(envp, 16, &n_env, "CAIRN_PVC_NAME", j->pvc);
    env_add(envp, 16, &n_env, "CAIRN_PV_NAME", j->pv);
    env_add(envp, 16, &n_env, "CAIRN_POD_NAME", j->pod);
    env_add(envp, 16, &n_env, "CAIRN_NODE_NAME", j->node);
    env_add(envp, 16, &n_env, "CAIRN_VOLUME_PATH", j->host_path);
    env_add(envp, 16, &n_env, "CAIRN_SNAPSHOT_OUT", outfile);
    env_add(envp, 16, &n_env, "CAIRN_FROZEN", "1");
    snprintf(who, sizeof who, "pvc %s/%s", j->ns, j->pvc);
    memset(&c, 0, sizeof c);
    c.cmd = cmd;
    c.var = var;
    c.who = who;
    c.envp = envp;
    c.deadline_ms = deadline_ms;
    c.timeout_msg = "did not finish within the freeze timeout (CAIRN_FREEZE_TIMEOUT): killed; "
                    "no snapshot taken";
    c.log = j->log;
    c.log_arg = j->log_arg;
    rc = run_command(&c, err);
    env_free(envp, n_env);
    if (rc == CAIRN_OK) {
        cairn_buf b = CAIRN_BUF_INIT;
        cairn_err e;
        if (cairn_read_file(outfile, &b, EXEC_OUT_MAX, &e) == CAIRN_OK) {
            char *s = (char *)cairn_buf_cstr(&b), *save = NULL, *l;
            for (l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                if (strncmp(l, "path=", 5) == 0)
                    snprintf(xr->path, sizeof xr->path, "%s", l + 5);
                else if (strncmp(l, "handle=", 7) == 0)
                    snprintf(xr->handle, sizeof xr->handle, "%s", l + 7);
            }
        }
        cairn_buf_free(&b);
    }
    return rc;
}

/* The storage snapshot an exec manifest records, released by retention (see
 * snapshot.h). */
int cairn_snap_exec_release(const struct cairn_snap_release *rl, const char *id,
                            const json_t *man, enum cairn_vs_outcome *out, char *what,
                            size_t whatlen, cairn_err *err)
{
    const json_t *s = json_object_get(man, "snapshot"), *k = json_object_get(man, "kubernetes");
    const char *method = json_string_value(json_object_get(s, "method"));
    const char *data = json_string_value(json_object_get(s, "data"));
    const char *handle = json_string_value(json_object_get(s, "handle"));
    const char *xvar = json_string_value(json_object_get(s, "command"));
    const char *ns = json_string_value(json_object_get(k, "namespace"));
    const char *pvc = json_string_value(json_object_get(k, "pvc"));
    const char *suffix, *cmd, *p;
    char rvar[96], who[400], *envp[16];
    size_t n_env = 0;
    struct stat st;
    struct command c;
    int rc;

    *out = CAIRN_VS_NONE;
    what[0] = 0;
    /* path= snapshots hold their data in the repository: nothing to release */
    if (!method || strcmp(method, "exec") != 0 || !data || strcmp(data, "reference") != 0 ||
        !handle || !*handle)
        return CAIRN_OK;
    snprintf(what, whatlen, "'%.256s'", handle);
    suffix = xvar && strncmp(xvar, "CAIRN_SNAPSHOT_EXEC", 19) == 0 ? xvar + 19 : NULL;
    for (p = suffix; p && *p; p++)
        if (!(isupper((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
            suffix = NULL;
    if (!suffix || (suffix[0] && suffix[0] != '_') || strlen(suffix) > 64) {
        *out = CAIRN_VS_NOT_OURS;
        snprintf(what, whatlen, "'%.256s' stays: the manifest's command '%.80s' is not a "
                 "CAIRN_SNAPSHOT_EXEC variable", handle, xvar ? xvar : "");
        return CAIRN_OK;
    }
    snprintf(rvar, sizeof rvar, "CAIRN_SNAPSHOT_RELEASE%s", suffix);
    cmd = getenv(rvar);
    if (!cmd || !*cmd) {
        *out = CAIRN_VS_NOT_OURS;
        snprintf(what, whatlen, "'%.256s' stays: no %s is configured (delete it on the storage "
                 "yourself)", handle, rvar);
        return CAIRN_OK;
    }
    if (cmd[0] != '/' || stat(cmd, &st) != 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
        return cairn_error(err, CAIRN_FAILED,
                           "%s '%.200s' is not an executable file given by its absolute path, "
                           "so the storage snapshot '%.256s' cannot be released",
                           rvar, cmd, handle);
    envp[0] = NULL;
    env_add(envp, 16, &n_env, "PATH", env_path());
    env_add(envp, 16, &n_env, "CAIRN_SNAPSHOT_HANDLE", handle);
    env_add(envp, 16, &n_env, "CAIRN_SNAPSHOT_ID", id);
    env_add(envp, 16, &n_env, "CAIRN_SNAPSHOT_TIME",
            json_string_value(json_object_get(man, "time")));
    env_add(envp, 16, &n_env, "CAIRN_SNAPSHOT_COMMAND", xvar);
    env_add(envp, 16, &n_env, "CAIRN_SNAPSHOT_NODE",
            json_string_value(json_object_get(k, "node")));
    env_add(envp, 16, &n_env, "CAIRN_PVC_NAMESPACE", ns);
    env_add(envp, 16, &n_env, "CAIRN_PVC_NAME", pvc);
    env_add(envp, 16, &n_env, "CAIRN_PV_NAME", json_string_value(json_object_get(k, "pv")));
    env_add(envp, 16, &n_env, "CAIRN_NODE_NAME", rl->node);
    snprintf(who, sizeof who, "pvc %s/%s: retention of snapshot %.12s", ns ? ns : "?",
             pvc ? pvc : "?", id);
    memset(&c, 0, sizeof c);
    c.cmd = cmd;
    c.var = rvar;
    c.who = who;
    c.envp = envp;
    c.deadline_ms = mono_ms() + rl->cfg->release_timeout_ms;
    c.timeout_msg = "did not finish within CAIRN_RELEASE_TIMEOUT: killed; the snapshot is kept "
                    "and released again later";
    c.abort = rl->abort;
    c.abort_arg = rl->abort_arg;
    c.log = rl->log;
    c.log_arg = rl->log_arg;
    rc = run_command(&c, err);
    env_free(envp, n_env);
    if (rc != CAIRN_OK)
        return cairn_error_prefix(err, "cannot release the storage snapshot '%.256s'", handle);
    *out = CAIRN_VS_DELETED;
    snprintf(what, whatlen, "'%.256s' (%s)", handle, rvar);
    return CAIRN_OK;
}

/* ---- csi ---- */

static int vs_delete(const struct cairn_snap_job *j, const char *name)
{
    char path[700];
    cairn_err e;
    snprintf(path, sizeof path, SNAP_API "/namespaces/%s/volumesnapshots/%s", j->ns, name);
    if (cairn_kube_request(j->kube, "DELETE", path, NULL, NULL, 0, NULL, &e) != CAIRN_OK) {
        jlog(j, CAIRN_SNAP_LOG_WARN, "pvc %s/%s: cannot delete the VolumeSnapshot '%s': %s",
             j->ns, j->pvc, name, e.msg);
        return -1;
    }
    return 0;
}

/* The VolumeSnapshot a manifest records, released by retention (see
 * snapshot.h). */
int cairn_snap_vs_release(cairn_kube *k, const json_t *man, enum cairn_vs_outcome *out,
                          char *what, size_t whatlen, cairn_err *err)
{
    const json_t *s = json_object_get(man, "snapshot"), *md;
    const char *method = json_string_value(json_object_get(s, "method"));
    const char *data = json_string_value(json_object_get(s, "data"));
    const char *name = json_string_value(json_object_get(s, "volume_snapshot"));
    const char *ns = json_string_value(json_object_get(s, "namespace"));
    const char *uid = json_string_value(json_object_get(s, "uid"));
    const char *pvc =
        json_string_value(json_object_get(json_object_get(man, "kubernetes"), "pvc"));
    const char *label, *owner_pvc, *cur_uid;
    char path[700], *body = NULL;
    json_t *got = NULL, *opts;
    int rc;

    *out = CAIRN_VS_NONE;
    what[0] = 0;
    if (!method || strcmp(method, "csi") != 0 || !data || !name ||
        (strcmp(data, "reference") != 0 &&
         !(strcmp(data, "files") == 0 &&
           json_is_true(json_object_get(json_object_get(s, "copy"), "volume_snapshot_kept")))))
        return CAIRN_OK;
    snprintf(what, whatlen, "'%.64s/%.253s'", ns ? ns : "?", name);
    if (!ns || !cairn_dns1123_subdomain(ns) || !cairn_dns1123_subdomain(name)) {
        *out = CAIRN_VS_NOT_OURS;
        snprintf(what, whatlen, "'%.64s/%.253s' was left alone: not a valid namespace/name",
                 ns ? ns : "?", name);
        return CAIRN_OK;
    }
    snprintf(path, sizeof path, SNAP_API "/namespaces/%s/volumesnapshots/%s", ns, name);
    rc = cairn_kube_get_json(k, path, &got, err);
    if (rc == CAIRN_NOTFOUND) {
        *out = CAIRN_VS_GONE;
        return CAIRN_OK;
    }
    if (rc != CAIRN_OK)
        return cairn_error_prefix(err, "cannot read the VolumeSnapshot %s", what);
    md = json_object_get(got, "metadata");
    label = json_string_value(
        json_object_get(json_object_get(md, "labels"), "app.kubernetes.io/managed-by"));
    owner_pvc =
        json_string_value(json_object_get(json_object_get(md, "annotations"), "cairn.io/pvc"));
    cur_uid = json_string_value(json_object_get(md, "uid"));
    if (!label || strcmp(label, "cairn") != 0 || !cur_uid ||
        (uid && strcmp(uid, cur_uid) != 0) ||
        (!uid && (!pvc || !owner_pvc || strcmp(pvc, owner_pvc) != 0))) {
        *out = CAIRN_VS_NOT_OURS;
        snprintf(what, whatlen, "'%.64s/%.253s' was left alone: %s", ns, name,
                 !label || strcmp(label, "cairn") != 0
                     ? "it has no label app.kubernetes.io/managed-by=cairn (not created by "
                       "Cairn)"
                 : uid ? "its uid is not the one recorded (another object of the same name)"
                       : "its cairn.io/pvc annotation does not name the snapshot's PVC");
        json_decref(got);
        return CAIRN_OK;
    }
    /* the uid as a precondition: a namesake created since the GET is kept */
    opts = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "DeleteOptions",
                     "preconditions", "uid", cur_uid);
    json_decref(got);
    if (!opts || !(body = json_dumps(opts, JSON_COMPACT))) {
        json_decref(opts);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    json_decref(opts);
    rc = cairn_kube_request(k, "DELETE", path, "application/json", body, strlen(body), NULL,
                            err);
    free(body);
    if (rc == CAIRN_OK) {
        *out = CAIRN_VS_DELETED;
    } else if (rc == CAIRN_NOTFOUND) {
        *out = CAIRN_VS_GONE;
    } else if (rc == CAIRN_EXISTS) { /* 409: the uid precondition failed */
        *out = CAIRN_VS_NOT_OURS;
        snprintf(what, whatlen, "'%.64s/%.253s' was left alone: it was replaced by another "
                 "object of the same name since it was read", ns, name);
    } else {
        return cairn_error_prefix(err, "cannot delete the VolumeSnapshot %s", what);
    }
    return CAIRN_OK;
}

static int vs_create(const struct cairn_snap_job *j, char *name, size_t namelen, cairn_err *err)
{
    char path[600], when[32];
    time_t t = time(NULL);
    struct tm tm;
    json_t *body, *spec;
    char *txt;
    int rc;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y%m%d%H%M%S", &tm);
    snprintf(name, namelen, "cairn-%.200s-%s", j->pvc, when);
    spec = json_pack("{s:{s:s}}", "source", "persistentVolumeClaimName", j->pvc);
    if (spec && j->policy->snapshot_class[0])
        json_object_set_new(spec, "volumeSnapshotClassName",
                            json_string(j->policy->snapshot_class));
    body = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}, s:{s:s, s:s}}, s:o}", "apiVersion",
                     "snapshot.storage.k8s.io/v1", "kind", "VolumeSnapshot", "metadata", "name",
                     name, "namespace", j->ns, "labels", "app.kubernetes.io/managed-by", "cairn",
                     "annotations", "cairn.io/pvc", j->pvc, "cairn.io/node", j->node, "spec",
                     spec);
    if (body && j->policy->csi_copy != CAIRN_CSI_COPY_OFF) /* leftovers: cairn_copy_gc() */
        json_object_set_new(json_object_get(json_object_get(body, "metadata"), "annotations"),
                            "cairn.io/csi-copy",
                            json_string(cairn_csi_copy_name(j->policy->csi_copy)));
    if (!body || !(txt = json_dumps(body, JSON_COMPACT))) {
        json_decref(body);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    json_decref(body);
    snprintf(path, sizeof path, SNAP_API "/namespaces/%s/volumesnapshots", j->ns);
    rc = cairn_kube_request(j->kube, "POST", path, "application/json", txt, strlen(txt), NULL,
                            err);
    free(txt);
    if (rc != CAIRN_OK)
        return cairn_error_prefix(err, "cannot create the VolumeSnapshot '%s'", name);
    return CAIRN_OK;
}

/* Polls the VolumeSnapshot until want(status) or deadline. *vs gets it. */
enum vs_want { VS_CUT, VS_READY };

static int vs_wait(const struct cairn_snap_job *j, const char *name, enum vs_want want,
                   int64_t deadline_ms, json_t **vs, cairn_err *err)
{
    char path[700];
    int rc;
    snprintf(path, sizeof path, SNAP_API "/namespaces/%s/volumesnapshots/%s", j->ns, name);
    *vs = NULL;
    for (;;) {
        json_t *st, *e;
        rc = cairn_kube_get_json(j->kube, path, vs, err);
        if (rc == CAIRN_OK) {
            st = json_object_get(*vs, "status");
            e = json_object_get(st, "error");
            if (json_is_object(e) && json_string_value(json_object_get(e, "message")))
                return cairn_error(err, CAIRN_FAILED,
                                   "the VolumeSnapshot '%s' failed: %.400s", name,
                                   json_string_value(json_object_get(e, "message")));
            if (want == VS_CUT && json_string_value(json_object_get(st, "creationTime")))
                return CAIRN_OK;
            if (want == VS_READY && json_is_true(json_object_get(st, "readyToUse")))
                return CAIRN_OK;
            json_decref(*vs);
            *vs = NULL;
        } else if (rc != CAIRN_RETRY) {
            return cairn_error_prefix(err, "cannot read the VolumeSnapshot '%s'", name);
        }
        if (mono_ms() + j->cfg->poll_ms > deadline_ms)
            return cairn_error(err, CAIRN_FAILED,
                               want == VS_CUT
                                   ? "the VolumeSnapshot '%s' was not cut (no "
                                     "status.creationTime) within the freeze timeout "
                                     "(CAIRN_FREEZE_TIMEOUT)"
                                   : "the VolumeSnapshot '%s' did not become readyToUse within "
                                     "CAIRN_CSI_READY_TIMEOUT",
                               name);
        sleep_ms(j->cfg->poll_ms);
    }
}

static void copy_log(void *arg, int warn, const char *msg)
{
    jlog(arg, warn ? CAIRN_SNAP_LOG_WARN : CAIRN_SNAP_LOG_INFO, "%s", msg);
}

/* ---- the job ---- */

struct run {
    const struct cairn_snap_job *j;
    cairn_pg_session *pg;
    json_t *pgsec;       /* the "postgres" section (in extra) */
    int pg_stop_in_hook; /* file: stop after the copy */
    cairn_my_quiesce *my;
    double held[4];      /* cairn_mono() at the start of a hold, by enum cairn_quiesce; 0: none */
    double hold_first, hold_last; /* the first hold's start, the last one's end */
};

/* A hold of the workload (a freeze, a database backup mode) began at t0. */
static void hold_begin(struct run *r, enum cairn_quiesce q, double t0)
{
    r->held[q] = t0;
    if (r->hold_first <= 0 || t0 < r->hold_first)
        r->hold_first = t0;
}

/* ... and ended now: reported (j->quiesced) once; its seconds (0 when none
 * was held). */
static double hold_end(struct run *r, enum cairn_quiesce q)
{
    double now = cairn_mono(), sec;
    if (r->held[q] <= 0)
        return 0;
    sec = now - r->held[q];
    r->held[q] = 0;
    r->hold_last = now;
    if (r->j->quiesced)
        r->j->quiesced(r->j->quiesced_arg, q, sec);
    return sec;
}

/* The manifest's quiesce_ms: from the first hold to the last release, once
 * every hold is over; -1 while one lasts or when there was none. */
static json_int_t hold_ms(const struct run *r)
{
    size_t i;
    for (i = 0; i < sizeof r->held / sizeof *r->held; i++)
        if (r->held[i] > 0)
            return -1;
    if (r->hold_first <= 0 || r->hold_last < r->hold_first)
        return -1;
    return (json_int_t)((r->hold_last - r->hold_first) * 1000 + 0.5);
}

/* The database may go on: the snapshot is cut (postgres: pg_backup_stop;
 * mysql: BACKUP STAGE END). */
static int db_release(const struct cairn_snap_job *j, struct run *r, cairn_err *err)
{
    int rc;
    if (r->my) {
        rc = cairn_my_quiesce_end(r->my, err);
        r->my = NULL;
        hold_end(r, CAIRN_QUIESCE_MYSQL); /* the session is over either way */
        if (rc != CAIRN_OK)
            return rc;
        jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: BACKUP STAGE END done", j->ns, j->pvc);
    }
    if (r->pg && !r->pg_stop_in_hook && !json_object_get(r->pgsec, "stop_lsn")) {
        if ((rc = cairn_pg_session_stop(r->pg, r->pgsec, err)) != CAIRN_OK)
            return rc;
        hold_end(r, CAIRN_QUIESCE_POSTGRES);
        jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: pg_backup_stop done", j->ns, j->pvc);
    }
    return CAIRN_OK;
}

static int stop_in_hook(void *arg, json_t *man, cairn_err *err)
{
    struct run *r = arg;
    json_t *pg;
    json_int_t ms;
    int rc;
    if (!r->pg_stop_in_hook)
        return CAIRN_OK;
    if (json_is_true(json_object_get(man, "partial")))
        return cairn_error(err, CAIRN_FAILED,
                           "some files of the PostgreSQL data directory could not be read "
                           "(named above): a base backup with missing files is not usable, so "
                           "none was recorded");
    if (!(pg = json_object_get(man, "postgres")))
        return cairn_error(err, CAIRN_FATAL, "the manifest has no 'postgres' section");
    if ((rc = cairn_pg_session_stop(r->pg, pg, err)) != CAIRN_OK)
        return rc;
    hold_end(r, CAIRN_QUIESCE_POSTGRES);
    if ((ms = hold_ms(r)) >= 0 && json_is_object(json_object_get(man, "snapshot")))
        json_object_set_new(json_object_get(man, "snapshot"), "quiesce_ms", json_integer(ms));
    return CAIRN_OK;
}

static const char *consistency_of(const struct cairn_pvc_policy *p, int frozen)
{
    if (p->quiesce == CAIRN_QUIESCE_POSTGRES || p->quiesce == CAIRN_QUIESCE_MYSQL)
        return "app";
    if (p->snapshot == CAIRN_SNAPSHOT_FILE)
        return "none";
    return frozen ? "fs" : "crash";
}

int cairn_snap_run(const struct cairn_snap_job *j, struct cairn_backup_result *res,
                   cairn_err *err)
{
    const struct cairn_pvc_policy *p = j->policy;
    struct cairn_backup_opts *bo = j->bo;
    struct run run;
    struct creds cr;
    cairn_freeze *fz = NULL;
    json_t *snap = NULL, *vs = NULL;
    char pgrel[256] = "", btrfs_name[64] = "", vsname[300] = "", outfile[PATH_MAX + 64];
    char readp[PATH_MAX + 600], root[PATH_MAX], var[80], label[400];
    const char *paths[1], *const *user_x = bo->excludes;
    char **xs = NULL;
    size_t n_user_x = bo->n_excludes, n_xs = 0, i;
    int rc = CAIRN_OK, frozen = 0, reference = 0, copy = 0;
    int64_t t_freeze = 0;
    json_int_t frozen_ms;

    memset(&run, 0, sizeof run);
    memset(&cr, 0, sizeof cr);
    memset(res, 0, sizeof *res);
    outfile[0] = 0;
    run.j = j;
    snprintf(root, sizeof root, "%s", j->host_path);
    if (cairn_snap_plan_check(p, j->cfg, label, sizeof label) != 0)
        return cairn_error(err, CAIRN_FAILED, "%s", label);
    if (!(snap = json_object()) || json_object_set_new(bo->extra, "snapshot", snap) != 0)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    json_object_set_new(snap, "method", json_string(cairn_snapshot_kind_name(p->snapshot)));
    json_object_set_new(snap, "quiesce", json_string(cairn_quiesce_name(p->quiesce)));

    /* 1. the database, first: its backup mode brackets the snapshot */
    if (p->quiesce == CAIRN_QUIESCE_POSTGRES) {
        char pgdata[PATH_MAX + 300];
        if ((rc = read_creds(j, pg_keys, sizeof pg_keys / sizeof *pg_keys, &cr, err)) !=
                CAIRN_OK ||
            (rc = find_pgdata(j->host_path, pgrel, sizeof pgrel, err)) != CAIRN_OK)
            goto out;
        snprintf(pgdata, sizeof pgdata, "%s%s%s", j->host_path, pgrel[0] ? "/" : "", pgrel);
        snprintf(label, sizeof label, "cairn k8s:%.180s/%.180s", j->ns, j->pvc);
        if (!(run.pgsec = json_object()) ||
            json_object_set_new(bo->extra, "postgres", run.pgsec) != 0) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            goto out;
        }
        rc = cairn_pg_session_start(cr.kw, (const char *const *)cr.val, pgdata, label,
                                    run.pgsec, &run.pg, err);
        creds_wipe(&cr);
        if (rc != CAIRN_OK) {
            cairn_error_prefix(err, "cairn.io/quiesce 'postgres'");
            goto out;
        }
        hold_begin(&run, CAIRN_QUIESCE_POSTGRES, cairn_mono());
        if (pgrel[0])
            json_object_set_new(snap, "pgdata_subdir", json_string(pgrel));
        jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: pg_backup_start done (data directory '%s')",
             j->ns, j->pvc, pgdata);
    }

    if (p->quiesce == CAIRN_QUIESCE_MYSQL) {
        struct cairn_my_conn mc;
        struct cairn_my_coords co;
        json_t *my;
        if ((rc = read_creds(j, my_keys, sizeof my_keys / sizeof *my_keys, &cr, err)) !=
            CAIRN_OK)
            goto out;
        mc.host = creds_get(&cr, "host");
        mc.port = creds_get(&cr, "port");
        mc.socket = creds_get(&cr, "socket");
        mc.user = creds_get(&cr, "user");
        mc.password = creds_get(&cr, "password");
        rc = cairn_my_quiesce_start(&mc, NULL, j->cfg->state_dir, j->cfg->freeze_timeout_ms,
                                    &run.my, &co, err);
        creds_wipe(&cr);
        if (rc != CAIRN_OK) {
            cairn_error_prefix(err, "cairn.io/quiesce 'mysql'");
            goto out;
        }
        hold_begin(&run, CAIRN_QUIESCE_MYSQL, cairn_my_quiesce_blocked_since(run.my));
        my = json_pack("{s:s, s:I, s:s, s:s, s:s}", "binlog_file", co.file, "binlog_pos",
                       (json_int_t)co.pos, "gtid_binlog_pos", co.gtid, "server_id",
                       co.server_id, "server_version", co.version);
        if (!my || json_object_set_new(bo->extra, "mysql", my) != 0) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            goto out;
        }
        jlog(j, CAIRN_SNAP_LOG_INFO,
             "pvc %s/%s: BACKUP STAGE BLOCK_COMMIT: commits blocked at %s:%llu (gtid '%s')",
             j->ns, j->pvc, co.file, co.pos, co.gtid);
    }

    /* 2. the snapshot */
    switch (p->snapshot) {
    case CAIRN_SNAPSHOT_FILE:
        run.pg_stop_in_hook = run.pg != NULL;
        break;
    case CAIRN_SNAPSHOT_BTRFS:
        if ((rc = btrfs_check(j->host_path, err)) != CAIRN_OK ||
            (rc = btrfs_snapshot(j->host_path, btrfs_name, sizeof btrfs_name, err)) != CAIRN_OK) {
            btrfs_name[0] = 0;
            goto out;
        }
        snprintf(root, sizeof root, "%s/%s", j->host_path, btrfs_name);
        bo->ignore_device = 1; /* every snapshot is a new device; inodes and times stay */
        json_object_set_new(snap, "btrfs_snapshot", json_string(root));
        jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: btrfs snapshot '%s' created", j->ns, j->pvc,
             root);
        break;
    case CAIRN_SNAPSHOT_EXEC: {
        const char *cmd = exec_command(p->snapshot_exec, var, sizeof var);
        struct exec_result xr;
        uint8_t rnd[6];
        char hex[13];
        int erc;
        cairn_random(rnd, sizeof rnd);
        cairn_hex(rnd, sizeof rnd, hex);
        snprintf(outfile, sizeof outfile, "%s/exec-%s.out", j->cfg->state_dir, hex);
        if ((rc = cairn_mkdir_p(j->cfg->state_dir, 0700, err)) != CAIRN_OK)
            goto out;
        unlink(outfile);
        if ((rc = cairn_freeze_begin(j->host_path, j->cfg->state_dir, j->cfg->freeze_timeout_ms,
                                     &fz, err)) != CAIRN_OK)
            goto out;
        t_freeze = mono_ms();
        hold_begin(&run, CAIRN_QUIESCE_FSFREEZE, cairn_mono());
        jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: '%s' frozen; running %s '%s'", j->ns, j->pvc,
             j->host_path, var, cmd);
        erc = run_exec(j, cmd, var, outfile, t_freeze + j->cfg->freeze_timeout_ms, &xr, err);
        rc = cairn_freeze_end(fz, erc == CAIRN_OK ? err : NULL);
        fz = NULL;
        frozen = 1;
        frozen_ms = (json_int_t)(hold_end(&run, CAIRN_QUIESCE_FSFREEZE) * 1000 + 0.5);
        json_object_set_new(snap, "frozen_ms", json_integer(frozen_ms));
        jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: '%s' thawed after %lld ms", j->ns, j->pvc,
             j->host_path, (long long)frozen_ms);
        if (erc != CAIRN_OK) {
            rc = erc;
            goto out;
        }
        if (rc != CAIRN_OK)
            goto out;
        json_object_set_new(snap, "command", json_string(var));
        if (xr.handle[0])
            json_object_set_new(snap, "handle", json_string(xr.handle));
        if (xr.path[0]) {
            struct stat st;
            if (xr.path[0] != '/' || stat(xr.path, &st) != 0 || !S_ISDIR(st.st_mode)) {
                rc = cairn_error(err, CAIRN_FAILED,
                                 "%s wrote path='%.300s' to $CAIRN_SNAPSHOT_OUT, which is not "
                                 "a directory given by its absolute path",
                                 var, xr.path);
                goto out;
            }
            snprintf(root, sizeof root, "%s", xr.path);
            json_object_set_new(snap, "path", json_string(xr.path));
        } else {
            reference = 1;
        }
        break;
    }
    case CAIRN_SNAPSHOT_CSI: {
        json_t *st;
        const char *content;
        int want_freeze = p->quiesce != CAIRN_QUIESCE_NONE;
        if (want_freeze) {
            if ((rc = cairn_freeze_begin(j->host_path, j->cfg->state_dir,
                                         j->cfg->freeze_timeout_ms, &fz, err)) != CAIRN_OK)
                goto out;
            t_freeze = mono_ms();
            hold_begin(&run, CAIRN_QUIESCE_FSFREEZE, cairn_mono());
        }
        rc = vs_create(j, vsname, sizeof vsname, err);
        if (rc == CAIRN_OK)
            rc = vs_wait(j, vsname, VS_CUT,
                         want_freeze ? t_freeze + j->cfg->freeze_timeout_ms
                                     : mono_ms() + j->cfg->csi_ready_timeout_ms,
                         &vs, err);
        if (fz) {
            int trc = cairn_freeze_end(fz, rc == CAIRN_OK ? err : NULL);
            fz = NULL;
            frozen = 1;
            if (rc == CAIRN_OK)
                rc = trc;
            frozen_ms = (json_int_t)(hold_end(&run, CAIRN_QUIESCE_FSFREEZE) * 1000 + 0.5);
            json_object_set_new(snap, "frozen_ms", json_integer(frozen_ms));
        }
        if (rc != CAIRN_OK)
            goto out;
        json_decref(vs);
        vs = NULL;
        jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: VolumeSnapshot '%s' cut%s", j->ns, j->pvc,
             vsname, frozen ? "; thawed" : "");
        if ((rc = db_release(j, &run, err)) != CAIRN_OK)
            goto out;
        if ((rc = vs_wait(j, vsname, VS_READY, mono_ms() + j->cfg->csi_ready_timeout_ms, &vs,
                          err)) != CAIRN_OK)
            goto out;
        st = json_object_get(vs, "status");
        content = json_string_value(json_object_get(st, "boundVolumeSnapshotContentName"));
        json_object_set_new(snap, "volume_snapshot", json_string(vsname));
        json_object_set_new(snap, "namespace", json_string(j->ns));
        /* retention deletes exactly this object, not a namesake (snapshot.h) */
        if (json_string_value(json_object_get(json_object_get(vs, "metadata"), "uid")))
            json_object_set(snap, "uid", json_object_get(json_object_get(vs, "metadata"), "uid"));
        if (json_string_value(json_object_get(st, "creationTime")))
            json_object_set(snap, "creation_time", json_object_get(st, "creationTime"));
        if (json_object_get(st, "restoreSize"))
            json_object_set(snap, "restore_size", json_object_get(st, "restoreSize"));
        if (p->snapshot_class[0])
            json_object_set_new(snap, "class", json_string(p->snapshot_class));
        if (content) {
            char cpath[600];
            json_t *c = NULL;
            cairn_err e;
            json_object_set_new(snap, "content", json_string(content));
            snprintf(cpath, sizeof cpath, SNAP_API "/volumesnapshotcontents/%s", content);
            if (cairn_kube_get_json(j->kube, cpath, &c, &e) == CAIRN_OK) {
                const char *h = json_string_value(
                    json_object_get(json_object_get(c, "status"), "snapshotHandle"));
                if (h)
                    json_object_set_new(snap, "handle", json_string(h));
            } else {
                jlog(j, CAIRN_SNAP_LOG_WARN,
                     "pvc %s/%s: cannot read the VolumeSnapshotContent '%s' for its handle: %s",
                     j->ns, j->pvc, content, e.msg);
            }
            json_decref(c);
        }
        if (p->csi_copy != CAIRN_CSI_COPY_OFF)
            copy = 1;   /* a Job copies the data (csi_copy.h) */
        else
            reference = 1;
        break;
    }
    }
    /* an atomic snapshot is cut: the database may go on at once */
    if ((rc = db_release(j, &run, err)) != CAIRN_OK)
        goto out;
    if (hold_ms(&run) >= 0) /* file with postgres: in stop_in_hook */
        json_object_set_new(snap, "quiesce_ms", json_integer(hold_ms(&run)));

    /* 3. the copy */
    if (reference) {
        /* the storage snapshot is the artifact: an empty tree records it */
        snprintf(readp, sizeof readp, "%s/empty", j->cfg->state_dir);
        if ((rc = cairn_mkdir_p(readp, 0700, err)) != CAIRN_OK)
            goto out;
        json_object_set_new(snap, "data", json_string("reference"));
    } else {
        snprintf(readp, sizeof readp, "%s%s%s", root, pgrel[0] ? "/" : "", pgrel);
        json_object_set_new(snap, "data", json_string("files"));
    }
    if (run.pg) {
        size_t n_pgx;
        const char *const *pgx = cairn_pg_backup_excludes(&n_pgx);
        if (!(xs = calloc(n_pgx + n_user_x + 1, sizeof *xs))) {
            rc = cairn_error(err, CAIRN_FATAL, "out of memory");
            goto out;
        }
        for (i = 0; i < n_pgx; i++)
            xs[n_xs++] = (char *)pgx[i];
        for (i = 0; i < n_user_x; i++)
            xs[n_xs++] = (char *)user_x[i];
        bo->excludes = (const char *const *)xs;
        bo->n_excludes = n_xs;
    }
    paths[0] = readp;
    bo->paths = paths;
    bo->n_paths = 1;
    bo->consistency = consistency_of(p, frozen);
    bo->before_manifest = stop_in_hook;
    bo->before_manifest_arg = &run;
    if (copy) {
        struct cairn_copy_job cj;
        memset(&cj, 0, sizeof cj);
        cj.repo = j->repo;
        cj.kube = j->kube;
        cj.cfg = &j->cfg->copy;
        cj.poll_ms = j->cfg->poll_ms;
        cj.ns = j->ns;
        cj.pvc = j->pvc;
        cj.node = j->node;
        cj.volume_snapshot = vsname;
        cj.vs = vs;
        cj.mode = p->csi_copy;
        cj.subdir = pgrel;
        cj.source = bo->source;
        cj.consistency = bo->consistency;
        cj.excludes = bo->excludes;
        cj.n_excludes = bo->n_excludes;
        cj.extra = bo->extra;
        cj.cancel = bo->cancel;
        cj.cancel_arg = bo->cancel_arg;
        cj.log = copy_log;
        cj.log_arg = (void *)j;
        cj.leftovers = j->copy_leftovers;
        jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: copying VolumeSnapshot '%s' into the "
             "repository (cairn.io/csi-copy '%s', quiesce %s, %s)", j->ns, j->pvc, vsname,
             cairn_csi_copy_name(p->csi_copy), cairn_quiesce_name(p->quiesce),
             bo->consistency);
        rc = cairn_csi_copy_run(&cj, res, err);
        goto out;
    }
    jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: backing up '%s' (snapshot %s, quiesce %s, %s)",
         j->ns, j->pvc, reference ? "(a reference: no files)" : readp,
         cairn_snapshot_kind_name(p->snapshot), cairn_quiesce_name(p->quiesce),
         bo->consistency);
    rc = cairn_backup_run(j->repo, bo, res, err);
out:
    if (fz) {
        cairn_freeze_end(fz, NULL);
        fz = NULL;
    }
    hold_end(&run, CAIRN_QUIESCE_FSFREEZE); /* a failed job observes its holds too */
    creds_wipe(&cr);
    cairn_pg_session_free(run.pg); /* before stop: aborts the server's backup */
    hold_end(&run, CAIRN_QUIESCE_POSTGRES);
    cairn_my_quiesce_free(run.my);  /* the session ends: the stage is released */
    hold_end(&run, CAIRN_QUIESCE_MYSQL);
    if (btrfs_name[0]) {
        cairn_err e;
        if (btrfs_delete(j->host_path, btrfs_name, &e) != CAIRN_OK)
            jlog(j, CAIRN_SNAP_LOG_WARN, "pvc %s/%s: %s", j->ns, j->pvc, e.msg);
        else
            jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: btrfs snapshot '%s' deleted", j->ns,
                 j->pvc, btrfs_name);
    }
    if (vsname[0] && rc != CAIRN_OK && vs_delete(j, vsname) == 0)
        jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: deleted the VolumeSnapshot '%s' of the failed "
             "job", j->ns, j->pvc, vsname);
    else if (vsname[0] && rc != CAIRN_OK && copy && j->copy_leftovers)
        *j->copy_leftovers = 1;
    if (vsname[0] && rc == CAIRN_OK && copy && p->csi_copy == CAIRN_CSI_COPY_ON) {
        /* copied: the data is in the repository, the storage snapshot goes */
        if (vs_delete(j, vsname) == 0)
            jlog(j, CAIRN_SNAP_LOG_INFO, "pvc %s/%s: deleted the VolumeSnapshot '%s' (copied "
                 "into snapshot %.12s)", j->ns, j->pvc, vsname, res->id);
        else if (j->copy_leftovers)
            *j->copy_leftovers = 1;
    }
    if (outfile[0])
        unlink(outfile);
    json_decref(vs);
    free(xs);
    bo->excludes = user_x;
    bo->n_excludes = n_user_x;
    bo->paths = NULL;
    bo->n_paths = 0;
    return rc;
}

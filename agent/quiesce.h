/* agent/quiesce.h — fsfreeze of a volume's filesystem for the instant a
 * snapshot is cut below it (CSI, `exec`), with a watchdog that thaws it even
 * if the agent dies. See docs/agent.md ("Quiesce").
 *
 * A freeze (FIFREEZE on the mount point) blocks every write to the whole
 * filesystem (the superblock, not only the bind mount), so:
 *   - cairn_freeze_check() refuses a path that is not the root of its own
 *     filesystem (a subdirectory of a shared disk would freeze the node's
 *     disk), the filesystem of / and the filesystem holding the state dir;
 *   - cairn_freeze_begin() starts the watchdog first: a process detached
 *     from the agent (double fork + setsid) holding an fd of the mount point
 *     and the read end of a pipe whose write end only the agent holds
 *     (O_CLOEXEC: children the agent starts do not inherit it). It thaws
 *     when the pipe reaches EOF without the agent's "thawed" byte (the agent
 *     died, even by SIGKILL) or when the deadline passes, whichever is first;
 *   - a freeze record (a small file naming the mount point) is written to
 *     <state dir>/freeze/ before the freeze and removed after the thaw;
 *     cairn_freeze_recover() at agent start thaws whatever a previous agent
 *     left recorded (the case where the watchdog died with it: the whole
 *     container or cgroup killed).
 *
 * Limit: if the node's kernel or the agent's whole cgroup is killed between
 * the freeze and the thaw, the filesystem stays frozen until the agent starts
 * again (cairn_freeze_recover) or someone runs `fsfreeze -u`.
 *
 * Ownership: a cairn_freeze is owned by the caller until cairn_freeze_end()
 * frees it (always, whatever it returns). Threading: one freeze per handle;
 * the functions fork, so call them from a thread that holds no lock other
 * threads need. Nothing here prints or exits (the watchdog process writes one
 * line to stderr when it has to thaw). */
#ifndef CAIRN_AGENT_QUIESCE_H
#define CAIRN_AGENT_QUIESCE_H

#include <stdint.h>

#include "../engine/util.h"

#define CAIRN_STATE_DIR "/var/lib/cairn"       /* default state dir */
#define CAIRN_FREEZE_TIMEOUT_MS 30000          /* default watchdog bound */

typedef struct cairn_freeze cairn_freeze;

/* CAIRN_OK when mount may be frozen (see above); CAIRN_FAILED with a message
 * naming the path and the reason otherwise. state_dir may be NULL. */
int cairn_freeze_check(const char *mount, const char *state_dir, cairn_err *err);

/* Records, starts the watchdog (thaw after timeout_ms at the latest), then
 * freezes mount. On error nothing stays frozen and nothing recorded. */
int cairn_freeze_begin(const char *mount, const char *state_dir, int64_t timeout_ms,
                       cairn_freeze **out, cairn_err *err);

/* Thaws, tells the watchdog, removes the record, frees f. CAIRN_FAILED when
 * the filesystem was no longer frozen (the watchdog's deadline passed or
 * someone thawed it): a snapshot cut in that window is not trustworthy. */
int cairn_freeze_end(cairn_freeze *f, cairn_err *err);

/* How long the current freeze has lasted, in milliseconds (0 for NULL). */
int64_t cairn_freeze_elapsed_ms(const cairn_freeze *f);

/* Thaws every filesystem recorded under <state_dir>/freeze/ and removes the
 * records. For each one log(arg, message) says what was done (thawed, or
 * was not frozen). Returns the number of filesystems that were still frozen,
 * or a negative code (err set) when the directory cannot be read. */
typedef void (*cairn_freeze_log_fn)(void *arg, const char *msg);
int cairn_freeze_recover(const char *state_dir, cairn_freeze_log_fn log, void *arg,
                         cairn_err *err);

/* ---- MariaDB: BACKUP STAGE around a snapshot ----
 *
 * A `mariadb` client (the command-line client, run as a coprocess: no client
 * library is linked) holds one session: BACKUP STAGE START, BACKUP STAGE
 * BLOCK_COMMIT (commits wait; the binary log and the engines agree), then the
 * binlog coordinates are read while commits are blocked (SHOW MASTER STATUS,
 * @@gtid_binlog_pos); the caller cuts an atomic snapshot; cairn_my_quiesce_end
 * runs BACKUP STAGE END. If the client or the agent dies, the session ends and
 * the server releases the stage by itself.
 *
 * Credentials go to the client in a 0600 defaults file under state_dir that
 * is removed as soon as the client has connected (never on its command line
 * or in its environment). The caller ignores SIGPIPE (cmd_agent does): a
 * client that died is then an error, not a signal. */
struct cairn_my_conn {
    const char *host, *port, *socket, *user, *password; /* NULL = not given */
};

struct cairn_my_coords {
    char file[256];          /* binlog file ("" when binary logging is off) */
    unsigned long long pos;
    char gtid[1024];         /* @@gtid_binlog_pos */
    char server_id[32];
    char version[128];
};

typedef struct cairn_my_quiesce cairn_my_quiesce;

/* client: the client program (NULL: $CAIRN_MARIADB_CLIENT, else "mariadb"
 * from PATH). Each step waits at most timeout_ms. */
int cairn_my_quiesce_start(const struct cairn_my_conn *c, const char *client,
                           const char *state_dir, int64_t timeout_ms, cairn_my_quiesce **out,
                           struct cairn_my_coords *coords, cairn_err *err);
/* When commits began to be blocked (cairn_mono() just before BACKUP STAGE
 * BLOCK_COMMIT was sent; 0 for NULL): the start of the workload's hold. */
double cairn_my_quiesce_blocked_since(const cairn_my_quiesce *q);
/* BACKUP STAGE END, then the client quits; frees q. */
int cairn_my_quiesce_end(cairn_my_quiesce *q, cairn_err *err);
/* Ends the session without END (the server releases it); NULL is fine. */
void cairn_my_quiesce_free(cairn_my_quiesce *q);

#endif

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

#endif

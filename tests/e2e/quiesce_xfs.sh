#!/usr/bin/env bash
# fsfreeze around an `exec` snapshot on a real loop-mounted XFS, through the
# agent and the fake API server. A writer appends numbered records, each
# fsync'ed (acknowledged = fsync returned), throughout. The configured exec
# command copies the loop image while the filesystem is frozen (what a
# storage-level snapshot sees). Checked:
#   - while the command runs no record is acknowledged (the freeze holds);
#   - the copy mounts (XFS log recovery is normal; -o nouuid on a second
#     loop device) and holds a gap-free prefix 1..M of the records with M at
#     least every record acknowledged before the freeze;
#   - writes resume after the thaw; the manifest says method exec,
#     consistency fs, data reference; `cairn snapshots --json` too;
#   - csi with fsfreeze: frozen until the VolumeSnapshot is cut, not until
#     it is readyToUse;
#   - an exec command that writes path=<dir>: that directory is backed up;
#   - the agent kill -9'ed mid-freeze (the command sleeps): the watchdog
#     thaws at once (a write completes within the bound);
#   - the agent SIGSTOPped mid-freeze: the watchdog's deadline
#     (CAIRN_FREEZE_TIMEOUT) thaws it; the resumed agent fails that job
#     ("thawed before the snapshot was done") instead of trusting it;
#   - a freeze record left by an agent whose watchdog died too: the next
#     agent thaws the filesystem at start;
#   - the quiesce time: cairn_quiesce_duration_seconds{method="fsfreeze"}
#     counts each freeze (exec, csi, and the failed job whose freeze outlived
#     the deadline), at least as long as the command slept (0.5 s; 3 s for
#     the SIGSTOP case); the manifest's quiesce_ms equals frozen_ms.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_agent.sh"
need_loop "quiesce_xfs"
need_cmd mkfs.xfs losetup mount umount fsfreeze

VOL=
COPY_DEV=
_xfs_cleanup() {
  local rc=$?
  set +e
  [ -n "$VOL" ] && fsfreeze -u "$VOL" 2>/dev/null || true
  touch "$T/stop-slow" "$T/stop-writer" 2>/dev/null || true
  [ -n "${AGENT_PID:-}" ] && kill -KILL "$AGENT_PID" 2>/dev/null || true
  [ -n "${WRITER_PID:-}" ] && { kill "$WRITER_PID" 2>/dev/null; wait "$WRITER_PID" 2>/dev/null; } || true
  mountpoint -q "$T/copymnt" 2>/dev/null && umount "$T/copymnt" || true
  [ -n "$COPY_DEV" ] && losetup -d "$COPY_DEV" 2>/dev/null || true
  [ -n "$VOL" ] && mountpoint -q "$VOL" && { umount "$VOL" || umount -l "$VOL"; } || true
  (exit "$rc")
  _cleanup
}
trap _xfs_cleanup EXIT

cairn_repo_init
agent_fake_start
ANN='{"cairn.io/schedule":"@daily","cairn.io/quiesce":"fsfreeze","cairn.io/snapshot":"exec"}'
VOL=$(agent_volume app db pv-db 44444444-2222-3333-4444-555555555555)
truncate -s 320M "$T/xfs.img"
mkfs.xfs -q "$T/xfs.img"
mount -o loop "$T/xfs.img" "$VOL"

# The writer: record N is "N\n" appended and fsync'ed; then N goes to acked.
cat >"$T/writer.py" <<'EOF'
import os, sys, time
path, acked, stop = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while not os.path.exists(stop):
    n += 1
    os.write(fd, b"%08d\n" % n)
    os.fsync(fd)
    tmp = acked + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % n)
    os.rename(tmp, acked)
    time.sleep(0.002)
EOF
python3 "$T/writer.py" "$VOL/records" "$T/acked" "$T/stop-writer" &
WRITER_PID=$!
wait_for 10 "the writer's first record" test -s "$T/acked"
acked() { cat "$T/acked"; }

# The platform team's command: it runs while the filesystem is frozen.
cat >"$T/snap.sh" <<EOF
#!/bin/sh
set -e
cat "$T/acked" >"$T/acked-at-start"
sleep 0.5
cat "$T/acked" >"$T/acked-later"
cp --sparse=always "$T/xfs.img" "$T/copy.img"
echo "copied the image of \$CAIRN_PVC_NAMESPACE/\$CAIRN_PVC_NAME at \$CAIRN_VOLUME_PATH"
echo "handle=copy.img" >"\$CAIRN_SNAPSHOT_OUT"
EOF
cat >"$T/slow.sh" <<EOF
#!/bin/sh
echo sleeping
for i in \$(seq 1 300); do [ -e "$T/stop-slow" ] && exit 0; sleep 0.1; done
EOF
chmod 755 "$T/snap.sh" "$T/slow.sh"

agent_start CAIRN_SNAPSHOT_EXEC="$T/snap.sh" CAIRN_SNAPSHOT_EXEC_SLOW="$T/slow.sh" \
  CAIRN_FREEZE_TIMEOUT=20
agent_wait_status app db 60
case $STATUS in ok\ *) ;; *) fail "the exec backup failed: $STATUS" ;; esac
SNAP=${STATUS#ok }
[ "$(cat "$T/acked-at-start")" = "$(cat "$T/acked-later")" ] ||
  fail "records were acknowledged while the filesystem should have been frozen ($(cat "$T/acked-at-start") -> $(cat "$T/acked-later"))"
A0=$(cat "$T/acked-at-start")
grep -q "CAIRN_SNAPSHOT_EXEC: copied the image of app/db at $VOL" "$T/agent.err" ||
  fail "the command's output is not in the agent's log"
# writes resume after the thaw
a1=$(acked)
sleep 0.5
[ "$(acked)" -gt "$a1" ] || fail "no record was acknowledged after the thaw"

# The manifest and `cairn snapshots --json`.
python3 - "$CAIRN_REPO/snapshots/$SNAP" <<'EOF' || fail "the manifest does not describe the exec snapshot"
import json, sys
m = json.load(open(sys.argv[1]))
s = m["snapshot"]
assert m["consistency"] == "fs", m["consistency"]
assert (s["method"], s["quiesce"], s["data"], s["handle"]) == ("exec", "fsfreeze", "reference", "copy.img"), s
assert 500 <= s["frozen_ms"] < 20000, s
assert abs(s["quiesce_ms"] - s["frozen_ms"]) <= 1, s
EOF
agent_quiesce fsfreeze app/db
[ "$QN" = 1 ] || fail "cairn_quiesce_duration_seconds_count{method=fsfreeze} is $QN after one frozen job"
fcmp "0.5 <= $QSUM < 20" || fail "the freeze around a command that sleeps 0.5 s was observed as $QSUM s"
fcmp "$QLAST == $QSUM" || fail "cairn_last_quiesce_duration_seconds of app/db is $QLAST, the histogram's sum $QSUM"
Q1=$QSUM
agent_quiesce postgres
[ "$QN" = 0 ] || fail "a postgres hold was counted for an fsfreeze job"
cairn_ok snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" '[s for s in j if s["id"] == "'"$SNAP"'"][0]["consistency"]')" = fs ] ||
  fail "cairn snapshots --json does not show consistency fs"

# The copy: it mounts (log recovery) and holds a gap-free prefix.
COPY_DEV=$(losetup -f --show "$T/copy.img")
mkdir -p "$T/copymnt"
mount -o nouuid "$COPY_DEV" "$T/copymnt" || fail "the frozen copy of the XFS image does not mount"
python3 - "$T/copymnt/records" "$A0" <<'EOF' || fail "the frozen copy does not hold the acknowledged records"
import sys
data = open(sys.argv[1], "rb").read()
acked = int(sys.argv[2])
lines = data.split(b"\n")
if lines and lines[-1] == b"":
    lines.pop()
for i, l in enumerate(lines, 1):
    if l != b"%08d" % i:
        sys.exit("record %d is %r: not a gap-free prefix" % (i, l[:20]))
if len(lines) < acked:
    sys.exit("the copy holds %d records; %d were acknowledged before the freeze" % (len(lines), acked))
print("copy holds records 1..%d; %d acknowledged before the freeze" % (len(lines), acked))
EOF
umount "$T/copymnt"
losetup -d "$COPY_DEV"
COPY_DEV=

# ---- kill -9 mid-freeze: the watchdog thaws at once ----
# ---- csi with fsfreeze: frozen until the VolumeSnapshot is cut, not until ready ----
ctl POST vs-steps '{"cut_after": 3, "ready_after": 25}' >/dev/null
agent_set_ann app db '{"cairn.io/snapshot":"csi","cairn.io/snapshot-class":"xfs-snaps"}'
agent_request app db
agent_wait_snapshot app db 60 'm["snapshot"]["method"] == "csi"'
case $STATUS in ok\ *) ;; *) fail "the csi backup with fsfreeze failed: $STATUS" ;; esac
python3 - "$CAIRN_REPO/snapshots/${STATUS#ok }" <<'EOF2' || fail "csi with fsfreeze: the freeze did not end at the cut"
import json, sys
m = json.load(open(sys.argv[1]))
s = m["snapshot"]
assert m["consistency"] == "fs", m["consistency"]
assert (s["method"], s["quiesce"], s["data"]) == ("csi", "fsfreeze", "reference"), s
# cut after 3 reads at 100 ms, ready after 25: frozen ~0.2 s, not ~2.4 s
assert 150 <= s["frozen_ms"] < 1500, s["frozen_ms"]
assert abs(s["quiesce_ms"] - s["frozen_ms"]) <= 1, s
EOF2
agent_quiesce fsfreeze app/db
[ "$QN" = 2 ] || fail "cairn_quiesce_duration_seconds_count{method=fsfreeze} is $QN after two frozen jobs"
fcmp "0.15 <= $QLAST < 1.5 and abs($QSUM - $Q1 - $QLAST) < 1e-3" ||
  fail "the csi freeze was observed as $QLAST s (sum $Q1 -> $QSUM)"
a1=$(acked)
sleep 0.3
[ "$(acked)" -gt "$a1" ] || fail "no write after the csi backup"

# ---- exec that hands a directory back (path=): the agent backs it up ----
cat >"$T/copydir.sh" <<EOF
#!/bin/sh
set -e
rm -rf "$T/copydir"
cp -a "\$CAIRN_VOLUME_PATH/." "$T/copydir"
echo "path=$T/copydir" >"\$CAIRN_SNAPSHOT_OUT"
EOF
chmod 755 "$T/copydir.sh"
agent_stop
agent_start CAIRN_SNAPSHOT_EXEC="$T/snap.sh" CAIRN_SNAPSHOT_EXEC_SLOW="$T/slow.sh" \
  CAIRN_SNAPSHOT_EXEC_COPY_DIR="$T/copydir.sh" CAIRN_FREEZE_TIMEOUT=20
agent_set_ann app db '{"cairn.io/snapshot":"exec:copy-dir"}'
agent_request app db
agent_wait_snapshot app db 60 'm["snapshot"].get("command") == "CAIRN_SNAPSHOT_EXEC_COPY_DIR"'
case $STATUS in ok\ *) ;; *) fail "the exec backup with path= failed: $STATUS" ;; esac
cairn_ok restore "${STATUS#ok }" --target "$T/restored-copy" >/dev/null
diff -r "$T/copydir" "$T/restored-copy" || fail "the backup of the exec command's directory differs from it"
python3 - "$T/restored-copy/records" "$CAIRN_REPO/snapshots/${STATUS#ok }" "$T/copydir" <<'EOF2' || fail "the exec path= backup is not as expected"
import json, sys
lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
assert lines and all(l == b"%08d" % i for i, l in enumerate(lines, 1)), "not a gap-free prefix"
m = json.load(open(sys.argv[2]))
s = m["snapshot"]
assert (m["consistency"], s["data"], s["path"], s["command"]) == ("fs", "files", sys.argv[3], "CAIRN_SNAPSHOT_EXEC_COPY_DIR"), s
EOF2

agent_set_ann app db '{"cairn.io/snapshot":"exec:slow"}'
: >"$T/agent.err.before"
agent_request app db
frozen_now() { grep -q "frozen; running CAIRN_SNAPSHOT_EXEC_SLOW" "$T/agent.err"; }
wait_for 20 "the agent to freeze for exec:slow" frozen_now
a1=$(acked)
sleep 1
[ "$(acked)" = "$a1" ] || fail "the filesystem is not frozen while exec:slow runs"
[ -n "$(ls "$T/state/freeze")" ] || fail "no freeze record while frozen"
kill -KILL "$AGENT_PID"
t0=$(date +%s.%N)
wait "$AGENT_PID" 2>/dev/null || true
resumed() { [ "$(acked)" != "$a1" ]; }
wait_for 10 "a write after the agent was killed mid-freeze" resumed
t1=$(date +%s.%N)
dt=$(python3 -c "print('%.2f' % ($t1 - $t0))")
echo "thawed ${dt} s after kill -9 (watchdog on EOF)"
python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 5 else 1)" || fail "thawed only $dt s after the kill"
touch "$T/stop-slow"

# ---- SIGSTOP mid-freeze: the watchdog's deadline thaws ----
rm -f "$T/stop-slow"
AGENT_LAST=
n_slow0=$(grep -c "frozen; running CAIRN_SNAPSHOT_EXEC_SLOW" "$T/agent.err")
agent_start CAIRN_SNAPSHOT_EXEC="$T/snap.sh" CAIRN_SNAPSHOT_EXEC_SLOW="$T/slow.sh" \
  CAIRN_FREEZE_TIMEOUT=3
# the record of the killed agent: thawed already, so only noted and removed
nrec() { ls "$T/state/freeze" | wc -l; }
wait_for 10 "the killed agent's freeze record to be handled" grep -q "did not record its thaw" "$T/agent.err"
AGENT_LAST=$(pvc_status app db)
agent_request app db
n_frozen=$(grep -c "frozen; running CAIRN_SNAPSHOT_EXEC_SLOW" "$T/agent.err")
frozen_again() { [ "$(grep -c "frozen; running CAIRN_SNAPSHOT_EXEC_SLOW" "$T/agent.err")" -gt "$n_frozen" ]; }
# the new agent's first tick may take the request; wait for a new freeze
wait_for 20 "the second agent to freeze" frozen_again
a1=$(acked)
kill -STOP "$AGENT_PID"
t0=$(date +%s.%N)
wait_for 10 "the watchdog's deadline to thaw the filesystem" resumed
t1=$(date +%s.%N)
dt=$(python3 -c "print('%.2f' % ($t1 - $t0))")
echo "thawed ${dt} s after the agent was stopped (deadline 3 s from the freeze)"
python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 4.5 else 1)" || fail "thawed only $dt s after the stop"
kill -CONT "$AGENT_PID"
agent_wait_status app db 30
case $STATUS in
  failed:*) ;;
  *) fail "the job whose freeze outlived the deadline was not failed: $STATUS" ;;
esac
grep -Eq "did not finish within the freeze timeout|thawed before the snapshot was done" "$T/agent.err" ||
  fail "the agent does not say why the job failed"
# the failed jobs' freezes are observed too (one, or two when the first
# tick took the killed agent's request), each lasting the 3 s deadline
agent_quiesce fsfreeze app/db
n_slow=$(($(grep -c "frozen; running CAIRN_SNAPSHOT_EXEC_SLOW" "$T/agent.err") - n_slow0))
[ "$QN" = "$n_slow" ] && fcmp "2.9 * $QN <= $QSUM < 30 * $QN" ||
  fail "$n_slow failed jobs' freezes (3 s deadline) were observed as count $QN, sum $QSUM"
agent_stop
[ "$(nrec)" -eq 0 ] || fail "freeze records left after a clean stop: $(ls "$T/state/freeze")"

# ---- a record whose watchdog died too (container killed): thawed at start ----
mkdir -p "$T/state/freeze"
printf '%s' "$VOL" >"$T/state/freeze/left-by-a-dead-agent"
fsfreeze -f "$VOL"
sleep 0.2
a1=$(acked)
sleep 0.5
[ "$(acked)" = "$a1" ] || fail "fsfreeze -f did not stop the writer"
agent_set_ann app db '{"cairn.io/snapshot":"exec"}'
agent_start CAIRN_SNAPSHOT_EXEC="$T/snap.sh"
wait_for 10 "the agent to thaw a recorded freeze at start" resumed
grep -q "left '$VOL' frozen.*thawed it" "$T/agent.err" || fail "the thaw at start is not logged"
[ "$(nrec)" -eq 0 ] || fail "the freeze record was not removed"
agent_stop
grep -q "$TOKEN" "$T/agent.err" && fail "the token appears in the agent's log"
echo "PASS: quiesce_xfs"

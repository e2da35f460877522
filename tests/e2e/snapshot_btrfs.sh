#!/usr/bin/env bash
# cairn.io/snapshot: btrfs through the agent and the fake API server, on a
# real loop-mounted btrfs: a read-only subvolume snapshot is taken, the data
# is backed up from it, restores identically (diff -r), and the snapshot
# subvolume is gone afterwards. A second PVC asking for btrfs on a volume
# that is not btrfs fails with a clear message (Event + status + log) while
# the first one goes on.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_agent.sh"
need_loop "snapshot_btrfs"
need_cmd mkfs.btrfs btrfs losetup mount umount

VOL=
_btrfs_cleanup() {
  local rc=$?
  set +e
  [ -n "${AGENT_PID:-}" ] && kill -KILL "$AGENT_PID" 2>/dev/null
  [ -n "${WRITER_PID:-}" ] && { kill "$WRITER_PID" 2>/dev/null; wait "$WRITER_PID" 2>/dev/null; }
  [ -n "$VOL" ] && mountpoint -q "$VOL" && { umount "$VOL" || umount -l "$VOL"; }
  (exit "$rc")
  _cleanup
}
trap _btrfs_cleanup EXIT

cairn_repo_init
agent_fake_start
ANN='{"cairn.io/schedule":"@daily","cairn.io/snapshot":"btrfs"}'
VOL=$(agent_volume app data pv-data 55555555-2222-3333-4444-555555555555)
PLAIN=$(agent_volume app plain pv-plain 66666666-2222-3333-4444-555555555555)
echo "not btrfs" >"$PLAIN/x"
truncate -s 256M "$T/btrfs.img"
mkfs.btrfs -q "$T/btrfs.img" >/dev/null
mount -o loop "$T/btrfs.img" "$VOL"
mkdir -p "$VOL/sub/deeper" "$VOL/empty"
printf 'hello btrfs\n' >"$VOL/hello.txt"
head -c 500000 /dev/urandom >"$VOL/sub/random.bin"
python3 -c 'import sys; sys.stdout.write("line\n" * 20000)' >"$VOL/sub/deeper/lines.txt"
ln -s hello.txt "$VOL/link"
chmod 600 "$VOL/sub/random.bin"

agent_start
agent_wait_status app data 60
case $STATUS in ok\ *) ;; *) fail "the btrfs backup failed: $STATUS" ;; esac
SNAP=${STATUS#ok }
grep -q "pvc app/data: btrfs snapshot '$VOL/.cairn-snapshot-[0-9a-f]*' created" "$T/agent.err" ||
  fail "no btrfs snapshot was logged"
grep -q "pvc app/data: backing up '$VOL/.cairn-snapshot-[0-9a-f]*'" "$T/agent.err" ||
  fail "the backup did not read the snapshot"
grep -q "pvc app/data: btrfs snapshot '.cairn-snapshot-[0-9a-f]*' deleted" "$T/agent.err" ||
  fail "the snapshot's deletion was not logged"
btrfs subvolume list "$VOL" >"$T/subvols"
[ ! -s "$T/subvols" ] || { cat "$T/subvols" >&2; fail "a snapshot subvolume was left behind"; }
ls -a "$VOL" | grep -q cairn-snapshot && fail "a .cairn-snapshot directory was left in the volume"

python3 - "$CAIRN_REPO/snapshots/$SNAP" "$VOL" <<'EOF' || fail "the manifest does not describe the btrfs snapshot"
import json, sys
m = json.load(open(sys.argv[1]))
s = m["snapshot"]
assert m["consistency"] == "crash", m["consistency"]
assert (s["method"], s["quiesce"], s["data"]) == ("btrfs", "none", "files"), s
assert s["btrfs_snapshot"].startswith(sys.argv[2] + "/.cairn-snapshot-"), s
EOF
cairn_ok snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" '[s for s in j if s["id"] == "'"$SNAP"'"][0]["consistency"]')" = crash ] ||
  fail "cairn snapshots --json does not show consistency crash"
cairn_ok restore "$SNAP" --target "$T/restored" >/dev/null
diff -r --no-dereference "$VOL" "$T/restored" || fail "the restored volume differs from the btrfs volume"
[ "$(stat -c %a "$T/restored/sub/random.bin")" = 600 ] || fail "modes were not restored"

# The PVC whose volume is not btrfs: failed, said so, nothing left behind.
plain_done() { [ -n "$(pvc_status app plain)" ]; }
wait_for 20 "a result on app/plain" plain_done
pvc_status app plain >"$T/plain.status"
grep -q "^failed: .*is not on btrfs" "$T/plain.status" || fail "app/plain: status '$(cat "$T/plain.status")'"
ctl GET events >"$T/events.json"
python3 - "$T/events.json" <<'EOF' || fail "no BackupFailed Event on app/plain naming the problem"
import json, sys
ev = [e for e in json.load(open(sys.argv[1])) if e["involvedObject"].get("name") == "plain"]
assert any(e["reason"] == "BackupFailed" and "not on btrfs" in e["message"] for e in ev), ev
EOF
grep -q "pvc app/plain: .*is not on btrfs" "$T/agent.err" || fail "no log line for app/plain"

# A second backup while a writer runs: still consistent files (each file as
# of one instant), and still no snapshot left.
cat >"$T/writer.py" <<'EOF'
import os, sys
d, stop = sys.argv[1], sys.argv[2]
n = 0
while not os.path.exists(stop):
    n += 1
    with open(os.path.join(d, "counter.tmp"), "w") as f:
        f.write("%d\n" % n)
    os.rename(os.path.join(d, "counter.tmp"), os.path.join(d, "counter"))
EOF
# The kernel hands a deleted snapshot's device number to the next subvolume:
# take it with another one, so the next snapshot surely mounts as a new device.
btrfs subvolume create "$VOL/spare" >/dev/null
python3 "$T/writer.py" "$VOL" "$T/stop-writer" &
WRITER_PID=$!
AGENT_LAST=$STATUS
agent_request app data
agent_wait_status app data 60
touch "$T/stop-writer"
wait "$WRITER_PID"
WRITER_PID=
case $STATUS in ok\ *) ;; *) fail "the second btrfs backup failed: $STATUS" ;; esac
cairn_ok restore "${STATUS#ok }" --target "$T/restored2" >/dev/null
# Each snapshot mounts as a new device, yet unchanged files are taken from the
# parent without reading them (inode, size and times match).
python3 - "$CAIRN_REPO/snapshots/${STATUS#ok }" <<'EOF' || fail "the second btrfs backup re-read unchanged files"
import json, sys
st = json.load(open(sys.argv[1]))["stats"]
assert st["reused"] >= 1 and st["bytes_read"] < 500000, st
EOF
grep -Eq '^[0-9]+$' "$T/restored2/counter" || fail "the counter file in the snapshot is torn"
# counter.tmp (if caught) is empty (just truncated) or whole: one write(2)
[ ! -e "$T/restored2/counter.tmp" ] ||
  python3 -c 'import re,sys; sys.exit(0 if re.fullmatch(rb"(\d+\n)?", open(sys.argv[1],"rb").read()) else 1)' \
    "$T/restored2/counter.tmp" || fail "torn temp file: '$(head -c 40 "$T/restored2/counter.tmp")'"
btrfs subvolume list "$VOL" >"$T/subvols"
grep -v ' path spare$' "$T/subvols" >&2 && fail "a snapshot subvolume was left behind after the second backup"
agent_stop
echo "PASS: snapshot_btrfs"

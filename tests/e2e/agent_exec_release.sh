#!/usr/bin/env bash
# Retention of cairn.io/snapshot: exec backups runs the configured release
# command for the storage snapshots of the snapshots it forgets (root: exec
# freezes the volume, here a loop-mounted ext4). A fake exec command records
# each handle it "takes"; the release command logs its environment and
# "deletes" the handle, or fails / hangs when told to:
#   - app/vol (last=2): after four backups exactly the handles of the two
#     forgotten records were released, once each, with the snapshot's id,
#     PVC and handle in the environment and nothing else of the agent's;
#   - a failing release (exit 1, then a hang killed at CAIRN_RELEASE_TIMEOUT)
#     keeps the record, counts failures, is retried on later ticks, and the
#     record goes once the command succeeds;
#   - app/copy (exec:copy, path=: the data is in the repository) never calls
#     a release command, although one is configured for it;
#   - app/keep (cairn.io/delete-volume-snapshots: "false"): records go, no
#     release;
#   - an agent with no release command configured forgets the record and
#     leaves the storage snapshot (logged), as before;
#   - `cairn check` passes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_agent.sh"
need_loop "agent_exec_release"
need_cmd mkfs.ext4 mount umount

VOLS=()
_rel_cleanup() {
  local rc=$? v
  set +e
  [ -n "${AGENT_PID:-}" ] && kill -KILL "$AGENT_PID" 2>/dev/null
  for v in "${VOLS[@]}"; do fsfreeze -u "$v" 2>/dev/null; done
  for v in "${VOLS[@]}"; do mountpoint -q "$v" && { umount "$v" || umount -l "$v"; }; done
  (exit "$rc")
  _cleanup
}
trap _rel_cleanup EXIT

cairn_repo_init
agent_fake_start
truncate -s 32M "$T/ext4.img"
mkfs.ext4 -q -F "$T/ext4.img" >/dev/null
mkdir -p "$T/fs"
mount -o loop "$T/ext4.img" "$T/fs"
VOLS+=("$T/fs")
echo data >"$T/fs/a.txt"
# one filesystem, bind-mounted as three PVCs' volumes (each a mount of its root)
add_pvc() { # PVC UID ANNOTATIONS
  local v
  v=$(ANN=$3 agent_volume app "$1" "pv-$1" "$2")
  mount --bind "$T/fs" "$v"
  VOLS=("$v" "${VOLS[@]}")
}
add_pvc vol 81111111-2222-3333-4444-555555555555 '{"cairn.io/schedule":"@daily","cairn.io/snapshot":"exec","cairn.io/retention":"last=2"}'
add_pvc copy 82222222-2222-3333-4444-555555555555 '{"cairn.io/schedule":"@daily","cairn.io/snapshot":"exec:copy","cairn.io/retention":"last=1"}'
add_pvc keep 83333333-2222-3333-4444-555555555555 '{"cairn.io/schedule":"@daily","cairn.io/snapshot":"exec","cairn.io/retention":"last=1","cairn.io/delete-volume-snapshots":"false"}'

# The platform team's commands.
cat >"$T/snap.sh" <<EOF
#!/bin/sh
h=storage-\$CAIRN_PVC_NAME-\$(date +%s%N)
echo "\$h" >>"$T/taken"
echo "handle=\$h" >"\$CAIRN_SNAPSHOT_OUT"
EOF
cat >"$T/copy.sh" <<EOF
#!/bin/sh
set -e
h=copy-\$(date +%s%N)
mkdir -p "$T/copies/\$h"
cp -a "\$CAIRN_VOLUME_PATH/a.txt" "$T/copies/\$h/"
echo "\$h" >>"$T/taken"
printf 'path=%s\nhandle=%s\n' "$T/copies/\$h" "\$h" >"\$CAIRN_SNAPSHOT_OUT"
EOF
cat >"$T/release.sh" <<EOF
#!/bin/sh
echo "\$CAIRN_SNAPSHOT_HANDLE" >>"$T/calls"
env | sort >"$T/release-env"
case \$(cat "$T/mode" 2>/dev/null) in
  fail) echo "the storage says no to \$CAIRN_SNAPSHOT_HANDLE"; exit 1 ;;
  hang) echo hanging; sleep 60 ;;
esac
echo "\$CAIRN_SNAPSHOT_HANDLE \$CAIRN_SNAPSHOT_ID \$CAIRN_PVC_NAMESPACE/\$CAIRN_PVC_NAME \$CAIRN_SNAPSHOT_COMMAND" >>"$T/released"
echo "released \$CAIRN_SNAPSHOT_HANDLE"
EOF
chmod 755 "$T/snap.sh" "$T/copy.sh" "$T/release.sh"
: >"$T/taken"
: >"$T/calls"
: >"$T/released"

wait_ok() { # PVC PREV: until cairn.io/last-status is a new "ok ..."
  AGENT_LAST=$2
  agent_wait_status app "$1" 60
  case $STATUS in ok\ *) ;; *) fail "backup of app/$1 failed: $STATUS" ;; esac
}
backup_now() { # PVC
  local prev
  prev=$(pvc_status app "$1")
  agent_request app "$1"
  wait_ok "$1" "$prev"
}
# records PVC: the handles of k8s:app/PVC's records, one per line
records() {
  cairn_ok snapshots --json >"$T/snaps.json"
  python3 - "$T/snaps.json" "$1" <<'EOF'
import json, sys
for s in json.load(open(sys.argv[1])):
    if s["source"] == "k8s:app/" + sys.argv[2]:
        print(s["snapshot"]["handle"])
EOF
}
taken() { grep "^storage-$1-\|^$1-" "$T/taken" | sort; }
metric() { curl -fsS "http://127.0.0.1:$AGENT_MPORT/metrics" | awk -v k="$1" '$1 == k {print $2}'; }

AGENT_ENV=(CAIRN_SNAPSHOT_EXEC="$T/snap.sh" CAIRN_SNAPSHOT_EXEC_COPY="$T/copy.sh"
  CAIRN_SNAPSHOT_RELEASE="$T/release.sh" CAIRN_SNAPSHOT_RELEASE_COPY="$T/release.sh"
  CAIRN_RELEASE_TIMEOUT=2)
agent_start "${AGENT_ENV[@]}"
wait_ok vol ""
wait_ok copy ""
wait_ok keep ""

# 1. Four backups with last=2: the two forgotten handles are released.
for _ in 1 2 3; do backup_now vol; done
records vol | sort >"$T/kept"
[ "$(wc -l <"$T/kept")" = 2 ] || fail "app/vol has $(wc -l <"$T/kept") records after 4 backups with last=2"
taken vol >"$T/taken-vol"
comm -23 "$T/taken-vol" "$T/kept" >"$T/forgotten"
[ "$(wc -l <"$T/forgotten")" = 2 ] || fail "expected 2 forgotten handles: $(cat "$T/forgotten")"
awk '{print $1}' "$T/released" | sort >"$T/released-handles"
diff "$T/forgotten" "$T/released-handles" >&2 ||
  fail "the released handles are not exactly those of the forgotten records"
[ "$(wc -l <"$T/calls")" = 2 ] || fail "the release command ran $(wc -l <"$T/calls") times, not 2"
[ "$(metric cairn_exec_snapshots_released_total)" = 2 ] ||
  fail "cairn_exec_snapshots_released_total is not 2: $(metric cairn_exec_snapshots_released_total)"
# the environment: the snapshot's identity, nothing of the agent's
python3 - "$T/release-env" "$T/snaps.json" "$T/released" <<'EOF' || fail "the release command's environment is not as documented"
import json, sys
env = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]) if "=" in l)
ids = {s["id"] for s in json.load(open(sys.argv[2]))}
allowed = {"PATH", "CAIRN_SNAPSHOT_HANDLE", "CAIRN_SNAPSHOT_ID", "CAIRN_SNAPSHOT_TIME",
           "CAIRN_SNAPSHOT_COMMAND", "CAIRN_SNAPSHOT_NODE", "CAIRN_PVC_NAMESPACE",
           "CAIRN_PVC_NAME", "CAIRN_PV_NAME", "CAIRN_NODE_NAME", "PWD", "SHLVL", "_"}
extra = set(env) - allowed
assert not extra, "unexpected variables: %r" % sorted(extra)
assert env["CAIRN_PVC_NAMESPACE"] == "app" and env["CAIRN_PVC_NAME"] == "vol", env
assert env["CAIRN_PV_NAME"] == "pv-vol" and env["CAIRN_NODE_NAME"] == "node-a", env
assert env["CAIRN_SNAPSHOT_NODE"] == "node-a" and env["CAIRN_SNAPSHOT_COMMAND"] == "CAIRN_SNAPSHOT_EXEC", env
assert env["CAIRN_SNAPSHOT_HANDLE"].startswith("storage-vol-"), env
assert len(env["CAIRN_SNAPSHOT_ID"]) == 64 and env["CAIRN_SNAPSHOT_ID"] not in ids, env
assert env["CAIRN_SNAPSHOT_TIME"].startswith("20"), env
for l in open(sys.argv[3]):
    h, i, pvc, cmd = l.split()
    assert i not in ids and pvc == "app/vol" and cmd == "CAIRN_SNAPSHOT_EXEC", l
EOF
grep -q "pvc app/vol: retention: released the storage snapshot 'storage-vol-[0-9]*' (CAIRN_SNAPSHOT_RELEASE) of snapshot [0-9a-f]\{12\}" "$T/agent.err" ||
  fail "no log line for a released storage snapshot"
grep -q "pvc app/vol: retention of snapshot [0-9a-f]\{12\}: CAIRN_SNAPSHOT_RELEASE: released storage-vol-" "$T/agent.err" ||
  fail "the release command's output is not in the agent's log"

# 2. The release fails (exit 1, then hangs past CAIRN_RELEASE_TIMEOUT): the
# record stays, failures are counted, later ticks retry; then it succeeds.
echo fail >"$T/mode"
records vol | sort >"$T/before"
backup_now vol
GONE=$(comm -23 "$T/before" <(records vol | sort))
[ -z "$GONE" ] || fail "the record of '$GONE' went although its release failed"
[ "$(records vol | wc -l)" = 3 ] || fail "app/vol does not keep 3 records while a release fails"
grep -q "pvc app/vol: retention: snapshot [0-9a-f]\{12\} is kept until its storage snapshot is released: cannot release the storage snapshot 'storage-vol-[0-9]*': CAIRN_SNAPSHOT_RELEASE '.*' failed with exit status 1" "$T/agent.err" ||
  fail "no log line for the failed release"
grep -q "CAIRN_SNAPSHOT_RELEASE: the storage says no to storage-vol-" "$T/agent.err" ||
  fail "the failing command's output is not in the agent's log"
[ "$(metric cairn_volume_snapshot_deletions_pending)" = 1 ] || fail "no pending release on /metrics"
retried() { [ "$(metric cairn_exec_snapshot_release_failures_total)" -ge 2 ]; }
wait_for 20 "a retried (failing) release" retried
echo hang >"$T/mode"
n0=$(metric cairn_exec_snapshot_release_failures_total)
hung() { grep -q "did not finish within CAIRN_RELEASE_TIMEOUT: killed; the snapshot is kept" "$T/agent.err"; }
wait_for 30 "a release killed at CAIRN_RELEASE_TIMEOUT" hung
[ "$(records vol | wc -l)" = 3 ] || fail "a record went although its release command was killed"
[ "$(metric cairn_exec_snapshot_release_failures_total)" -gt "$n0" ] || fail "the timeout was not counted as a failure"
rm -f "$T/mode"
released3() { [ "$(records vol | wc -l)" = 2 ]; }
wait_for 40 "the retried release to succeed" released3
records vol | sort >"$T/kept"
taken vol | comm -23 - "$T/kept" >"$T/forgotten"
awk '{print $1}' "$T/released" | sort >"$T/released-handles"
diff "$T/forgotten" "$T/released-handles" >&2 || fail "after the retries the released handles are not those of the forgotten records"
[ "$(metric cairn_exec_snapshots_released_total)" = 3 ] || fail "cairn_exec_snapshots_released_total is not 3"
[ "$(metric cairn_volume_snapshot_deletions_pending)" = 0 ] || fail "a release is still pending"
grep -q "pvc app/vol: retention removed snapshot [0-9a-f]\{12\} after its storage snapshot was released" "$T/agent.err" ||
  fail "no log line for the retried release"
FAILS=$(metric cairn_exec_snapshot_release_failures_total)

# 3. path= (data in the repository) and delete-volume-snapshots: "false":
# records go, no release command runs.
backup_now copy
backup_now copy
backup_now keep
[ "$(records copy | wc -l)" = 1 ] && [ "$(records keep | wc -l)" = 1 ] || fail "retention did not forget app/copy's and app/keep's records"
grep -q "^copy-\|^storage-keep-" "$T/calls" && fail "a release ran for a path= snapshot or with delete-volume-snapshots: false"
python3 - "$T/snaps.json" <<'EOF' || fail "the copy snapshots are not path= snapshots"
import json, sys
s = [x["snapshot"] for x in json.load(open(sys.argv[1])) if x["source"] == "k8s:app/copy"]
assert s and all(x["data"] == "files" and x["path"] and x["handle"].startswith("copy-") for x in s), s
EOF
[ "$(metric cairn_exec_snapshot_release_failures_total)" = "$FAILS" ] || fail "failures counted for path= or kept snapshots"
agent_stop

# 4. No release command configured: the record goes, the storage snapshot
# stays (as before release commands existed), and the log says so.
: >"$T/calls"
AGENT_LAST=
agent_start CAIRN_SNAPSHOT_EXEC="$T/snap.sh" CAIRN_SNAPSHOT_EXEC_COPY="$T/copy.sh"
backup_now vol
[ "$(records vol | wc -l)" = 2 ] || fail "without a release command retention did not forget the record"
[ -s "$T/calls" ] && fail "a release ran although none is configured"
grep -q "pvc app/vol: retention: snapshot [0-9a-f]\{12\} forgotten; its storage snapshot 'storage-vol-[0-9]*' stays: no CAIRN_SNAPSHOT_RELEASE is configured" "$T/agent.err" ||
  fail "no log line for a storage snapshot left without a release command"
agent_stop
cairn_ok check >/dev/null
echo "PASS: agent_exec_release ($FAILS failed releases retried)"

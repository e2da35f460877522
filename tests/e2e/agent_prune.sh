#!/usr/bin/env bash
# cairn agent's retention and prune (issue 7, agent part), against
# tests/k8s/fake_apiserver.py: PVC app/data with cairn.io/retention last=2 is
# backed up 4 times (each time with new data, the old removed); forget runs
# per PVC after each backup, prune at most once per CAIRN_PRUNE_INTERVAL
# (4 s here; grace 0 so fresh packs can go) -- also across a restart of the
# agent (the time of the last prune is kept beside the catalog). Afterwards
# the repository passes `cairn check --read-data`, prune gave space back, and
# both kept snapshots restore to exactly what the volume held.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_k8s.sh"

INTERVAL=4
cairn_repo_init
k8s_start_fake
VOL=$(k8s_volume app data 11111111-0000-0000-0000-000000000003 '{"cairn.io/schedule":"@daily","cairn.io/retention":"last=2"}')
printf 'kept in every snapshot\n' >"$VOL/same.txt"
randfile "$VOL/data-1" 1500000

status() { pvc_ann app data cairn.io/last-status; }
save_state() { # the volume as the snapshot named by last-status must hold
  local s
  s=$(status)
  mkdir -p "$T/states"
  cp -a "$VOL" "$T/states/${s#ok }"
}
agent_start CAIRN_PRUNE_INTERVAL=$INTERVAL CAIRN_PRUNE_GRACE=0
first_ok() { case $(status) in "ok "*) return 0 ;; esac; return 1; }
wait_for 30 "the first backup" first_ok
save_state
for i in 2 3 4; do
  before=$(status)
  rm "$VOL/data-$((i - 1))"
  randfile "$VOL/data-$i" 1500000
  request_backup app data
  changed() { s=$(status) && [ "$s" != "$before" ] && [ "${s#ok }" != "$s" ]; }
  wait_for 30 "backup $i" changed
  save_state
done
sleep $((INTERVAL + 2)) # one more prune after the last forget
prunes_ok() { metrics | awk '/^cairn_prunes_total\{result="ok"\}/ { exit !($2 >= 2) }'; }
wait_for 10 "two successful prunes on /metrics" prunes_ok
metrics >"$T/metrics.txt"
kill -TERM "$AGENT_PID"
rc=0
wait "$AGENT_PID" || rc=$?
AGENT_PID=
[ "$rc" -eq 0 ] || fail "the agent exited $rc after SIGTERM"
cp "$T/agent.err" "$T/agent1.err"

# ---- prune ran at most once per interval, and gave space back ----
python3 - "$T/agent1.err" "$INTERVAL" <<'EOF' || fail "prune did not run as expected"
import re, sys, datetime
lines = open(sys.argv[1]).read().splitlines()
interval = float(sys.argv[2])
def t(line):
    return datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
starts = [t(l) for l in lines if "prune: starting" in l]
ends = [l for l in lines if re.search(r"prune: \d+ packs deleted", l)]
if len(starts) < 2:
    sys.exit("FAIL: %d prunes ran, want at least 2" % len(starts))
gaps = [b - a for a, b in zip(starts, starts[1:])]
if min(gaps) < interval - 0.05:
    sys.exit("FAIL: prunes %.2f s apart, interval %g s" % (min(gaps), interval))
run = t(lines[-1]) - t(lines[0])
if len(starts) > run / interval + 1:
    sys.exit("FAIL: %d prunes in %.1f s" % (len(starts), run))
deleted = sum(int(re.search(r"prune: (\d+) packs deleted", l).group(1)) for l in ends)
freed = sum(int(re.search(r"(\d+) bytes freed", l).group(1)) for l in ends)
if deleted < 1 or freed < 1000000:
    sys.exit("FAIL: prune gave nothing back (%d packs, %d bytes)" % (deleted, freed))
print("prunes: %d, %.1f..%.1f s apart, %d packs / %d bytes freed" % (len(starts), min(gaps), max(gaps), deleted, freed))
open(sys.argv[1] + ".last", "w").write("%f\n" % starts[-1])
EOF
grep -q '^cairn_last_prune_timestamp_seconds ' "$T/metrics.txt" || fail "no cairn_last_prune_timestamp_seconds"
grep -q 'cairn_prune_freed_bytes_total [1-9]' "$T/metrics.txt" || fail "cairn_prune_freed_bytes_total is 0"

# ---- a restart does not prune before the interval is over ----
agent_start CAIRN_PRUNE_INTERVAL=$INTERVAL CAIRN_PRUNE_GRACE=0
restarted_prune() { grep -q "prune: starting" "$T/agent.err"; }
wait_for 15 "a prune after the restart" restarted_prune
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || fail "the restarted agent did not exit 0"
AGENT_PID=
python3 - "$T/agent.err" "$T/agent1.err.last" "$INTERVAL" <<'EOF' || fail "the restarted agent pruned too early"
import sys, datetime
last = float(open(sys.argv[2]).read())
line = [l for l in open(sys.argv[1]).read().splitlines() if "prune: starting" in l][0]
t = datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
if t - last < float(sys.argv[3]) - 0.05:
    sys.exit("FAIL: pruned %.2f s after the previous agent's prune" % (t - last))
EOF

# ---- the repository is sound and the kept snapshots restore ----
cairn_ok check --read-data >/dev/null
cairn_ok snapshots --json >"$T/snaps.json"
json_get "$T/snaps.json" '" ".join(s["id"] for s in j if s["source"] == "k8s:app/data")' >"$T/kept"
read -r -a KEPT <"$T/kept"
[ "${#KEPT[@]}" -eq 2 ] || fail "retention last=2 kept ${#KEPT[@]} snapshots"
for id in "${KEPT[@]}"; do
  [ -d "$T/states/$id" ] || fail "kept snapshot $id is not one of the last backups"
  cairn_ok restore "$id" --target "$T/restored-$id" >/dev/null
  diff -r --no-dereference "$T/states/$id" "$T/restored-$id" || fail "snapshot $id does not restore to the volume's state"
done
echo "PASS: agent_prune"

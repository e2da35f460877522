#!/usr/bin/env bash
# cairn agent on SIGTERM with a backup in flight (1 GiB to read), against
# tests/k8s/fake_apiserver.py:
#  1. CAIRN_STOP_GRACE=0: the backup is aborted at once; the agent exits 0
#     within a few seconds; PVC app/big gets cairn.io/last-status "aborted: ..."
#     and no cairn.io/last-backup (so the run is due again), a BackupAborted
#     Event; no snapshot is recorded and `cairn check` passes.
#  2. CAIRN_STOP_GRACE=60: the in-flight backup finishes, its result is
#     recorded, then the agent exits 0; no new job starts after the signal.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_k8s.sh"

cairn_repo_init
k8s_start_fake
VOL=$(k8s_volume app big 11111111-0000-0000-0000-000000000001 '{"cairn.io/schedule":"@daily"}')
printf 'small file\n' >"$VOL/small.txt"
head -c 1G /dev/zero >"$VOL/zeros.bin" # real blocks, not a hole: every byte is read

in_flight() { grep -q "pvc app/big: backing up" "$T/agent.err"; }
stop_agent() { # sets ELAPSED (seconds from SIGTERM to exit) and RC_AGENT
  local t0 t1
  t0=$(date +%s.%N)
  kill -TERM "$AGENT_PID"
  for _ in $(seq 1 300); do agent_alive || break; sleep 0.1; done
  agent_alive && { kill -KILL "$AGENT_PID"; fail "the agent did not exit within 30 s of SIGTERM"; }
  t1=$(date +%s.%N)
  RC_AGENT=0
  wait "$AGENT_PID" || RC_AGENT=$?
  AGENT_PID=
  ELAPSED=$(python3 -c "print('%.1f' % ($t1 - $t0))")
}

# ---- 1. abort at once ----
agent_start CAIRN_STOP_GRACE=0 CAIRN_AGENT_WORKERS=1
wait_for 30 "the backup of app/big to start" in_flight
one_in_flight() { metrics >"$T/metrics.page" && grep -qx 'cairn_jobs_in_flight 1' "$T/metrics.page"; }
if ! one_in_flight; then
  # say what the page and the agent showed (CI failed here once, under load)
  { echo "--- metrics:"; grep -E '^cairn_jobs_in_flight|^cairn_up|^cairn_ready' "$T/metrics.page" || cat "$T/metrics.page"
    echo "--- agent log:"; tail -n 15 "$T/agent.err"; } >&2
  fail "cairn_jobs_in_flight is not 1 during the backup"
fi
stop_agent
check_no_crash "cairn agent" "$RC_AGENT" "$T/agent.err"
[ "$RC_AGENT" -eq 0 ] || { tail -n 20 "$T/agent.err" >&2; fail "the agent exited $RC_AGENT after SIGTERM"; }
python3 -c "import sys; sys.exit(0 if float('$ELAPSED') < 10 else 1)" ||
  fail "the agent took $ELAPSED s to abort and exit (want < 10 s)"
grep -q "snapshot .* of k8s:app/big" "$T/agent.err" &&
  fail "the backup finished before SIGTERM arrived (make the volume bigger)"
status=$(pvc_ann app big cairn.io/last-status)
case $status in
  "aborted: the agent on node node-a was stopped during the backup of k8s:app/big"*) ;;
  *) fail "cairn.io/last-status after the abort: '$status'" ;;
esac
[ -z "$(pvc_ann app big cairn.io/last-backup)" ] || fail "cairn.io/last-backup was set by an aborted backup"
ctl GET events >"$T/events.json"
[ "$(json_get "$T/events.json" 'len([e for e in j if e["reason"] == "BackupAborted" and e["type"] == "Warning" and e["involvedObject"]["name"] == "big"])')" -eq 1 ] ||
  fail "no (or more than one) BackupAborted Event on app/big"
grep -q "pvc app/big: aborted: " "$T/agent.err" || fail "the log does not say the backup was aborted"
cairn_ok snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" 'len(j)')" -eq 0 ] || fail "an aborted backup recorded a snapshot"
cairn_ok check >/dev/null
ABORT_ELAPSED=$ELAPSED
echo "abort: exit 0 after $ELAPSED s"

# ---- 2. the in-flight job finishes within the grace period ----
agent_start CAIRN_STOP_GRACE=60 CAIRN_AGENT_WORKERS=1
wait_for 30 "the second backup of app/big to start" in_flight
stop_agent
check_no_crash "cairn agent" "$RC_AGENT" "$T/agent.err"
[ "$RC_AGENT" -eq 0 ] || { tail -n 20 "$T/agent.err" >&2; fail "the agent exited $RC_AGENT after SIGTERM (grace)"; }
status=$(pvc_ann app big cairn.io/last-status)
case $status in
  "ok "*) ;;
  *) tail -n 20 "$T/agent.err" >&2; fail "with a grace period the in-flight backup should finish: '$status'" ;;
esac
[ -n "$(pvc_ann app big cairn.io/last-backup)" ] || fail "no cairn.io/last-backup after the finished backup"
cairn_ok snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" 'len(j)')" -eq 1 ] || fail "expected exactly one snapshot after the finished backup"
cairn_ok check --read-data >/dev/null
SNAP=${status#ok }
cairn_ok restore "$SNAP" --target "$T/restored" >/dev/null
cmp "$VOL/zeros.bin" "$T/restored/zeros.bin" || fail "the finished backup does not restore"
echo "PASS: agent_sigterm (abort and exit: $ABORT_ELAPSED s; finish and exit: $ELAPSED s)"

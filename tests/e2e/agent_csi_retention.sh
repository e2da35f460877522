#!/usr/bin/env bash
# Retention of cairn.io/snapshot: csi backups deletes the VolumeSnapshots of
# the snapshots it forgets, against the fake API server (no root needed):
#   - app/vol (last=2): after six backups exactly the VolumeSnapshots of the
#     two kept records are left; every other one was DELETEd with its uid as
#     a precondition;
#   - DELETEs failing (403, then 500 twice): the record is kept while its
#     VolumeSnapshot exists, the deletion is retried on later ticks and both
#     go in the end; log lines and the /metrics counters say so; a deletion
#     still failing when the agent stops is done by the next agent's
#     retention (the kept record is the reminder);
#   - a VolumeSnapshot replaced by a namesake (another uid) is left alone;
#   - a VolumeSnapshot a user made in the same namespace is never touched;
#   - app/keep (cairn.io/delete-volume-snapshots: "false"): records go, the
#     VolumeSnapshots stay;
#   - app/bad ("maybe"): an InvalidAnnotation Event naming the annotation,
#     backups go on, nothing is forgotten or deleted.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_agent.sh"

cairn_repo_init
agent_fake_start
ctl POST vs-steps '{"cut_after": 1, "ready_after": 2}' >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/snapshot":"csi","cairn.io/retention":"last=2"}' \
  agent_volume app vol pv-vol 81111111-2222-3333-4444-555555555555 >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/snapshot":"csi","cairn.io/retention":"last=1","cairn.io/delete-volume-snapshots":"false"}' \
  agent_volume app keep pv-keep 82222222-2222-3333-4444-555555555555 >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/snapshot":"csi","cairn.io/retention":"last=1","cairn.io/delete-volume-snapshots":"maybe"}' \
  agent_volume app bad pv-bad 83333333-2222-3333-4444-555555555555 >/dev/null
# made by a user, not by Cairn: never touched
ctl POST volumesnapshot '{"apiVersion":"snapshot.storage.k8s.io/v1","kind":"VolumeSnapshot","metadata":{"name":"user-snap","namespace":"app","annotations":{"cairn.io/pvc":"vol"}},"spec":{"source":{"persistentVolumeClaimName":"vol"}}}' >/dev/null

# wait_ok NS PVC PREV: until cairn.io/last-status is a new "ok ..." (not PREV)
wait_ok() {
  AGENT_LAST=$3
  agent_wait_status "$1" "$2" 60
  case $STATUS in ok\ *) ;; *) fail "backup of $1/$2 failed: $STATUS" ;; esac
}
backup_now() { # PVC: one more backup of app/PVC, waited for
  local prev
  prev=$(pvc_status app "$1")
  agent_request app "$1"
  wait_ok app "$1" "$prev"
}

# state PVC: records of k8s:app/PVC and the fake's VolumeSnapshots, as JSON
state() {
  cairn_ok snapshots --json >"$T/snaps.json"
  ctl GET volumesnapshots >"$T/vs.json"
  python3 - "$T/snaps.json" "$T/vs.json" "$1" <<'EOF'
import json, sys
snaps = json.load(open(sys.argv[1]))
vss = json.load(open(sys.argv[2]))
pvc = sys.argv[3]
rec = sorted(s["snapshot"]["volume_snapshot"] for s in snaps if s["source"] == "k8s:app/" + pvc)
mine = [v for v in vss if v["metadata"].get("annotations", {}).get("cairn.io/pvc") == pvc
        and v["sent"] is not None]
print(json.dumps({"records": rec,
                  "live": sorted(v["metadata"]["name"] for v in mine if not v["deleted"]),
                  "deleted": sorted(v["metadata"]["name"] for v in mine if v["deleted"])}))
EOF
}
metric() { curl -fsS "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k {print $2}'; }

MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
agent_start CAIRN_METRICS_PORT="$MPORT"
wait_ok app vol ""
wait_ok app keep ""
wait_ok app bad ""

# 1. More backups than retention keeps: the forgotten records' VolumeSnapshots go.
for _ in 1 2 3; do backup_now vol; done
state vol >"$T/st.json"
python3 - "$T/st.json" <<'EOF' || fail "after 4 backups with last=2 the VolumeSnapshots do not match the records"
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s["records"]) == 2, s
assert s["live"] == s["records"], s
assert len(s["deleted"]) == 2 and not set(s["deleted"]) & set(s["records"]), s
EOF
[ "$(metric cairn_volume_snapshots_deleted_total)" = 2 ] ||
  fail "cairn_volume_snapshots_deleted_total is not 2: $(metric cairn_volume_snapshots_deleted_total)"
grep -q "pvc app/vol: retention: deleted the VolumeSnapshot 'app/cairn-vol-" "$T/agent.err" ||
  fail "no log line for a deleted VolumeSnapshot"
ctl GET log >"$T/log.json"
python3 - "$T/log.json" "$T/vs.json" <<'EOF' || fail "the DELETE requests are not as expected"
import json, sys
log = json.load(open(sys.argv[1]))
vss = {v["metadata"]["name"]: v for v in json.load(open(sys.argv[2]))}
dels = [r for r in log if r["method"] == "DELETE"]
assert len(dels) == 2, dels
for r in dels:
    name = r["path"].rsplit("/", 1)[1]
    assert r["path"] == "/apis/snapshot.storage.k8s.io/v1/namespaces/app/volumesnapshots/" + name, r
    assert r["body"]["kind"] == "DeleteOptions", r
    assert r["body"]["preconditions"]["uid"] == vss[name]["metadata"]["uid"], r
EOF

# 2. Deletes failing for a while (403, then 500 twice): the record stays
# until its VolumeSnapshot is deleted, the agent retries on later ticks.
ctl POST fail '{"method":"DELETE","path":"/apis/snapshot.storage.k8s.io/v1/namespaces/app/volumesnapshots/","status":403,"count":1}' >/dev/null
ctl POST fail '{"method":"DELETE","path":"/apis/snapshot.storage.k8s.io/v1/namespaces/app/volumesnapshots/","status":500,"count":2}' >/dev/null
state vol >"$T/before.json"
backup_now vol
state vol >"$T/st.json"
python3 - "$T/before.json" "$T/st.json" <<'EOF' || fail "a record was forgotten although its VolumeSnapshot could not be deleted"
import json, sys
b, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
oldest = b["records"][0]
assert len(s["records"]) == 3 and oldest in s["records"], s
assert oldest in s["live"] and s["live"] == s["records"], s
EOF
grep -q "pvc app/vol: retention: snapshot [0-9a-f]\{12\} is kept until its VolumeSnapshot is deleted: .*forbidden (403)" "$T/agent.err" ||
  fail "no log line for the failed (403) deletion"
[ "$(metric cairn_volume_snapshot_deletions_pending)" = 1 ] || fail "cairn_volume_snapshot_deletions_pending is not 1"
retried() { state vol >"$T/r.json" && [ "$(json_get "$T/r.json" 'len(j["records"])')" = 2 ]; }
wait_for 40 "the retried deletion" retried
state vol >"$T/st.json"
python3 - "$T/before.json" "$T/st.json" <<'EOF' || fail "after the retries the VolumeSnapshots do not match the records"
import json, sys
b, s = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert s["live"] == s["records"] and len(s["records"]) == 2, s
assert b["records"][0] in s["deleted"] and len(s["deleted"]) == 3, s
EOF
[ "$(metric cairn_volume_snapshot_delete_failures_total)" = 3 ] ||
  fail "cairn_volume_snapshot_delete_failures_total is not 3: $(metric cairn_volume_snapshot_delete_failures_total)"
[ "$(metric cairn_volume_snapshots_deleted_total)" = 3 ] || fail "cairn_volume_snapshots_deleted_total is not 3"
[ "$(metric cairn_volume_snapshot_deletions_pending)" = 0 ] || fail "cairn_volume_snapshot_deletions_pending is not 0"
grep -q "injected failure 500 (next try in" "$T/agent.err" || fail "no log line for the failed (500) deletion"
grep -q "retention removed snapshot [0-9a-f]\{12\} after its VolumeSnapshot was deleted" "$T/agent.err" ||
  fail "no log line for the retried deletion"

# 2b. The pending deletion survives a restart: the record is its reminder.
ctl POST fail '{"method":"DELETE","path":"/apis/snapshot.storage.k8s.io/v1/namespaces/app/volumesnapshots/","status":500,"count":100000}' >/dev/null
state vol >"$T/before.json"
backup_now vol
state vol >"$T/st.json"
DEFERRED=$(json_get "$T/before.json" 'j["records"][0]')
json_get "$T/st.json" 'j["records"]' | grep -q "$DEFERRED" || fail "the record of '$DEFERRED' went although its VolumeSnapshot could not be deleted"
agent_stop
ctl POST fail-reset >/dev/null
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
agent_start CAIRN_METRICS_PORT="$MPORT"
backup_now vol
state vol >"$T/st.json"
python3 - "$T/st.json" "$DEFERRED" <<'EOF' || fail "after a restart the deferred deletion was not done by the next retention"
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s["records"]) == 2 and s["live"] == s["records"], s
assert sys.argv[2] in s["deleted"], s
EOF
[ "$(metric cairn_volume_snapshots_deleted_total)" = 2 ] || fail "the restarted agent did not delete 2 VolumeSnapshots"

# 3. The oldest kept record's VolumeSnapshot replaced by a namesake (another
# uid, same label): when the record goes, the namesake stays.
OLDEST=$(json_get "$T/st.json" 'j["records"][0]')
ctl POST volumesnapshot '{"apiVersion":"snapshot.storage.k8s.io/v1","kind":"VolumeSnapshot","metadata":{"name":"'"$OLDEST"'","namespace":"app","labels":{"app.kubernetes.io/managed-by":"cairn"},"annotations":{"cairn.io/pvc":"other"}},"spec":{"source":{"persistentVolumeClaimName":"other"}}}' >/dev/null
backup_now vol
state vol >"$T/st.json"
json_get "$T/st.json" 'j["records"]' | grep -q "$OLDEST" && fail "the record of '$OLDEST' was not forgotten"
ctl GET volumesnapshots >"$T/vs.json"
[ "$(json_get "$T/vs.json" '[v["deleted"] for v in j if v["metadata"]["name"] == "'"$OLDEST"'"]')" = "[false]" ] ||
  fail "a namesake VolumeSnapshot with another uid was deleted"
grep -q "retention: snapshot [0-9a-f]\{12\} forgotten; its VolumeSnapshot 'app/$OLDEST' was left alone: its uid is not the one recorded" "$T/agent.err" ||
  fail "no log line for the namesake left alone"

# 4. delete-volume-snapshots: "false" keeps them; a bad value stops retention.
backup_now keep
backup_now keep
backup_now bad
state keep >"$T/keep.json"
python3 - "$T/keep.json" <<'EOF' || fail "with cairn.io/delete-volume-snapshots: false the VolumeSnapshots were not kept"
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s["records"]) == 1 and len(s["live"]) == 3 and not s["deleted"], s
EOF
state bad >"$T/bad.json"
python3 - "$T/bad.json" <<'EOF' || fail "with a bad cairn.io/delete-volume-snapshots retention ran"
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s["records"]) == 2 and s["live"] == s["records"] and not s["deleted"], s
EOF
ctl GET events >"$T/events.json"
python3 - "$T/events.json" <<'EOF' || fail "no InvalidAnnotation Event naming cairn.io/delete-volume-snapshots"
import json, sys
ev = [e for e in json.load(open(sys.argv[1])) if e["involvedObject"].get("name") == "bad"
      and e["reason"] == "InvalidAnnotation"]
assert 1 <= len(ev) <= 2, ev  # once per agent run (the agent was restarted once)
assert all("cairn.io/delete-volume-snapshots 'maybe': not a boolean (valid: true, false)" in e["message"]
           for e in ev), ev
EOF
grep -q "pvc app/bad: .*cairn.io/delete-volume-snapshots 'maybe'" "$T/agent.err" ||
  fail "no log line for the bad annotation"

# 5. The user's VolumeSnapshot: never deleted, never asked to be.
ctl GET volumesnapshots >"$T/vs.json"
[ "$(json_get "$T/vs.json" '[v["deleted"] for v in j if v["metadata"]["name"] == "user-snap"]')" = "[false]" ] ||
  fail "the user's VolumeSnapshot was deleted"
ctl GET log | grep -q 'volumesnapshots/user-snap' && fail "the agent sent a request about the user's VolumeSnapshot"
agent_stop
cairn_ok check >/dev/null
echo "PASS: agent_csi_retention"
